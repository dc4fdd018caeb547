"""Reports that mirror the paper, built from synthetic records for all 22 datasets (tests/synthetic_results.py):
Table 2's layout with the paper's values, Figs. 2-6, 9, 11 and the image grids drawn from the right records, the cost
table beside Tables 1 and 5, a line naming the config for every missing input, and the per-metric timing that Fig. 5
reads."""

from __future__ import annotations

import math
import os
import re
import statistics

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from genbench.catalog import get_dataset
from genbench.report import paper
from genbench.report.build import build_report
from genbench.report.costs import ours_per_source
from genbench.report.grids import first_shots
from genbench.report.table2 import grouped_markdown, table2
from genbench.report.tables import BEST, SECOND
from tests.synthetic_results import BACKBONES, CLIP, GRID_DATASETS, STRATEGIES, synthetic_records, write_synthetic

KINDS = {"gain", "shots", "quality", "eval_time", "mts", "fig9", "fig10", "fig11", "grid"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("paper_report")
    run = write_synthetic(str(base))
    res = build_report([run], str(base / "out"), paper=True)
    return res, base, synthetic_records(str(base / "shards"))


def test_every_figure_is_drawn_and_is_a_real_png(built):
    res, _, _ = built
    drawn = {p["kind"] for p in res["plots"]}
    assert drawn == KINDS
    # the only line left: the 20 datasets whose collections this fixture did not write have no grid
    assert [s["kind"] for s in res["skipped"]] == ["grid"] and "20 dataset(s)" in res["skipped"][0]["reason"]
    assert sorted(os.path.basename(p["file"]) for p in res["plots"] if p["kind"] == "grid") == [
        f"grid_{d}.png" for d in sorted(GRID_DATASETS)]
    html = open(res["report_html"]).read()
    for p in res["plots"]:
        with Image.open(p["file"]) as im:
            assert im.format == "PNG" and im.size[0] > 400 and im.size[1] > 250
        assert f'src="{os.path.basename(p["file"])}"' in html and p["alt"]


def test_table2_columns_rows_and_paper_values(built):
    _, _, records = built
    t = table2(records, with_paper=True)
    assert [g for g, _ in t.groups] == ["common", "fine-grained", "rare", "all"]
    for g, cols in t.groups[:3]:  # the paper's order within each group, then the group's mean
        expected = [paper.SHORT[d] for d in paper.DATASETS if paper.GROUP[d] == g]
        assert [label for label, _ in cols] == expected + ["mean"]
        assert all(paper.GROUP[d] == get_dataset(d).group for d in paper.DATASETS if paper.GROUP[d] == g)
    assert [label for label, _ in t.rows] == [f"sd21-base {paper.STRATEGY_LABELS[s]}" for s in
                                              ("st", "ce", "dt", "np", "np+rd", "rd", "ra")]
    columns = [d for g in paper.GROUPS for d in paper.DATASETS if paper.GROUP[d] == g]
    at20 = {(r["strategy"], r["dataset"]): r["scores"]["cler"] for r in records
            if r["source"] == "generated" and r["shots"] == 20 and r["clip"] == CLIP}
    rows = dict(t.rows)
    for s in STRATEGIES:
        values = rows[f"sd21-base {paper.STRATEGY_LABELS[s]}"]
        ours = [at20[(s, d)] for d in columns]
        flat = [c.value for c in values]
        # 7 common + mean, 6 fine-grained + mean, 9 rare + mean, overall mean
        assert flat[:7] == pytest.approx(ours[:7]) and flat[8:14] == pytest.approx(ours[7:13])
        assert flat[7] == pytest.approx(statistics.fmean(ours[:7]))
        assert flat[-1] == pytest.approx(statistics.fmean(ours))
        key = ("SD", s)
        if key in paper.TABLE2:
            i = paper.DATASETS.index("cifar10")
            c10 = values[columns.index("cifar10")]
            assert c10.paper == paper.TABLE2[key][i] and c10.diff == pytest.approx(round(c10.value - c10.paper, 2))
            assert values[-1].paper == paper.TABLE2[key][-1]  # all 22 present: the paper's printed Mean
        else:
            assert all(c.paper is None for c in values)  # RD and RA alone are not rows of Table 2
    for j in range(len(t.rows[0][1])):  # best and second best per column
        col = [cells[j] for _, cells in t.rows]
        ranked = sorted({c.value for c in col}, reverse=True)
        assert {c.mark for c in col if c.value == ranked[0]} == {BEST}
        assert {c.mark for c in col if c.value == ranked[1]} == {SECOND}
    assert any("GLIDE ST, GLIDE CE, GLIDE DT" in n for n in t.notes)


def test_table2_in_markdown_and_html(built):
    res, _, records = built
    md, html = open(res["report_md"]).read(), open(res["report_html"]).read()
    dt_c10 = next(r["scores"]["cler"] for r in records if r["source"] == "generated" and r["strategy"] == "dt"
                  and r["shots"] == 20 and r["clip"] == CLIP and r["dataset"] == "cifar10")
    diff = f"{round(dt_c10 - 88.90, 2) + 0.0:+.2f}"
    row = next(line for line in md.splitlines() if line.startswith("| sd21-base DT |"))
    assert re.search(rf"{re.escape(f'{dt_c10:.2f}')}(\*\*|_)? \(88\.90, {re.escape(diff)}\)", row), row
    assert '<span class="paper">88.90</span>' in html and 'colspan="8" class="group">common' in html
    assert 'title="FGVC-Aircraft">Aircraft</abbr>' in html


def test_table2_without_paper_and_partial_means():
    recs = [r for r in synthetic_records("/nowhere") if r["dataset"] in ("cifar10", "mnist", "dtd")]
    t = table2(recs, with_paper=False)
    assert [g for g, _ in t.groups] == ["common", "rare", "all"]  # a group with no dataset here has no columns
    assert all(c.paper is None for _, cells in t.rows for c in cells)
    assert any("19 of the paper's 22 datasets" in n and "configs/paper/table2.yaml" in n for n in t.notes)
    md = grouped_markdown(t)
    assert "(" not in md.split("\n\n")[1].split("- ")[0].replace("(%)", "")  # no paper values in the cells


def test_table3_sets_plain_generation_beside_ti_on_retrieved_and_original_with_the_paper_means():
    from genbench.report.table3 import table3

    base = {"source": "generated", "generator": "stabilityai/stable-diffusion-2-1-base", "strategy": "dt",
            "clip": "ViT-B-32:openai"}
    adapted = {"ti-original": {"method": "ti", "references": "original"},
               "ti-retrieved": {"method": "ti", "references": "retrieved"}}
    recs = []
    for d, offset in (("dtd", 0.0), ("eurosat", 10.0)):
        for shots in (5, 100):
            for column, cler in (("plain", 40.0), ("ti-retrieved", 41.0), ("ti-original", 45.0)):
                recs.append({**base, "dataset": d, "shots": shots, "scores": {"cler": cler + offset + shots / 100},
                             **({"adaptation": adapted[column]} if column != "plain" else {})})
    assert "configs/paper/table3-ti.yaml" in table3(recs[:1])  # no adapted record: says which config makes them
    t = table3(recs, with_paper=True)
    assert [g for g, _ in t.groups] == ["5-shot generation", "100-shot generation"]
    assert [label for label, _ in t.groups[0][1]] == ["plain", "+TI retrieved", "+TI original"]
    assert [label for label, _ in t.rows] == ["dtd", "eurosat", "Mean"]
    dtd = t.rows[0][1]
    assert [c.value for c in dtd[:3]] == pytest.approx([40.05, 41.05, 45.05]) and dtd[2].mark == "best"
    mean = t.rows[2][1]
    assert mean[0].value == pytest.approx(45.05) and mean[0].paper == 45.92 and mean[5].paper == 53.90
    assert all(c.paper is None for c in t.rows[0][1])  # the paper reports Table 3's means only


def _stats(res, kind):
    return next(p["stats"] for p in res["plots"] if p["kind"] == kind)


def test_fig2_means_per_source_at_their_largest_shots(built):
    res, _, records = built
    means = _stats(res, "gain")["means"]
    assert list(means) == ["generated", "retrieved", "original"]
    for source in means:
        gains = [r["scores"]["cler"] - r["scores"]["zeroshot"] for r in records if r["source"] == source
                 and r["shots"] == 500 and r["clip"] == CLIP and r["strategy"] in (None, "dt")]
        assert len(gains) == 22 and means[source] == pytest.approx(statistics.fmean(gains))


def test_fig6_plots_generated_gain_against_the_retrieved_mts(built):
    res, _, records = built
    from genbench.metrics.correlation import cler_gain_vs_mts

    fig6 = _stats(res, "mts")
    mts = {r["dataset"]: r["mts"] for r in records if r["source"] == "retrieved"}
    gen = [r for r in records if r["source"] == "generated" and r["strategy"] == "dt" and r["shots"] == 20
           and r["clip"] == CLIP]
    xs = [mts[r["dataset"]] for r in gen]
    ys = [r["scores"]["cler"] - r["scores"]["zeroshot"] for r in gen]
    assert fig6["n"] == 22
    assert fig6["correlation"]["pearson"] == pytest.approx(stats.pearsonr(xs, ys).statistic)
    assert cler_gain_vs_mts(gen + [r for r in records if r["source"] == "retrieved" and r["shots"] == 1],
                            n_boot=50)["pearson"] == pytest.approx(stats.pearsonr(xs, ys).statistic)
    retrieved_gain = [r["scores"]["cler"] - r["scores"]["zeroshot"] for r in records
                      if r["source"] == "retrieved" and r["shots"] == 500]
    assert not np.allclose(sorted(ys), sorted(retrieved_gain))


def test_fig4_leaves_out_the_small_datasets_and_fig9_fig11_use_their_shots(built):
    res, _, records = built
    fig4 = _stats(res, "quality")
    assert {s["n"] for s in fig4.values()} == {18}
    lp = {r["dataset"]: r for r in records if r["source"] == "generated" and r["strategy"] == "dt"
          and r["shots"] == 100 and r["clip"] == CLIP and r["dataset"] not in paper.FIG4_LEFT_OUT}
    xs = [r["scores"]["cler"] for r in lp.values()]
    ys = [r["scores"]["linear_probe"] for r in lp.values()]
    assert fig4["CLER vs linear probe"]["correlation"]["pearson"] == pytest.approx(stats.pearsonr(xs, ys).statistic)
    assert list(_stats(res, "fig9")) == ["original, 5 shots", "retrieved, 5 shots"]
    fig11 = _stats(res, "fig11")
    assert [t.split(" ")[0] for t in fig11] == ["RN50", "ViT-B-32", "ViT-B-16", "ViT-L-14"]
    assert all(s["n"] == 22 for s in fig11.values()) and len(BACKBONES) == 3


def test_fig5_reads_the_measured_seconds(built):
    res, _, records = built
    fig5 = _stats(res, "eval_time")
    metrics = ["zeroshot", "cler", "cler_text", "linear_probe", "clip_score", "fd_clip"]
    full = [r for r in records if set(metrics) <= set(r["eval_seconds"])]
    assert fig5["n"] == len(full) > 0
    for m in metrics:
        assert fig5["seconds"][m] == pytest.approx(statistics.fmean(r["eval_seconds"][m] for r in full))


def test_cost_table_beside_tables_1_and_5(built):
    res, _, records = built
    rows = {r["source"]: r for r in ours_per_source(records)}
    assert list(rows) == ["generated", "retrieved", "original"]
    assert rows["original"]["usd_per_image"] == pytest.approx(1.2e-2) and rows["original"]["priced_by"] == "labelling price"
    gen = {r["collection"]: r["cost"] for r in records if r["source"] == "generated"}
    total = sum(c["usd_per_image"] * c["images"] for c in gen.values()) / sum(c["images"] for c in gen.values())
    assert rows["generated"]["usd_per_image"] == pytest.approx(total)
    assert rows["generated"]["images"] == sum(c["images"] for c in gen.values())
    md = open(res["report_md"]).read()
    # Table 1's figures and what Table 5's inputs give: both of the paper's inconsistencies
    for text in ("2.54e-04", "2.56e-03", "3.93e-05", "1.26e-04", "1.20e-02", "ours at the paper's spot rates"):
        assert text in md, text


def test_missing_inputs_name_the_config_that_makes_them(tmp_path):
    import json

    recs = [r for r in synthetic_records("/nowhere") if r["source"] == "original" and r["dataset"] == "mnist"]
    for r in recs:
        del r["eval_seconds"]
        r["scores"] = {k: v for k, v in r["scores"].items() if k in ("zeroshot", "cler")}
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.json").write_text(json.dumps(recs))
    res = build_report([str(tmp_path / "r")], str(tmp_path / "o"), paper=True)
    reasons = {s["kind"]: s["reason"] for s in res["skipped"]}
    assert {"quality", "eval_time", "mts", "fig9", "fig11", "grid"} <= set(reasons)
    for kind, config in (("quality", "fig4"), ("eval_time", "fig5"), ("mts", "fig6"), ("fig9", "fig9"),
                         ("fig11", "fig11-*")):
        assert f"configs/paper/{config}.yaml" in reasons[kind], (kind, reasons[kind])
    md = open(res["report_md"]).read()
    assert "Table 2: not drawn: no generated record with a CLER score: configs/paper/table2.yaml" in md
    assert {p["kind"] for p in res["plots"]} == {"gain", "shots"}  # what the records do support is drawn


def test_grid_cells_come_from_each_collections_first_shots(built):
    _, _, records = built
    cols = {r["strategy"]: r["collection"] for r in records if r["dataset"] == "cifar10" and r["source"] == "generated"}
    images = first_shots(cols["dt"], [0, 9])
    assert sorted(images) == [0, 9]
    centre = [np.asarray(images[c])[24, 24] for c in (0, 9)]
    corner = [np.asarray(images[c])[2, 2].astype(int) for c in (0, 9)]
    assert all(abs(int(v) - w) < 40 for px in centre for v, w in zip(px, (250, 240, 120)))  # DT's yellow triangle
    assert np.abs(corner[0] - corner[1]).sum() > 60  # each class its own colour


def test_paper_data_agrees_with_itself_and_the_catalog():
    for key, values in paper.TABLE2.items():
        assert len(values) == 23
        assert statistics.fmean(values[:22]) == pytest.approx(values[22], abs=0.006), key
    for d in paper.DATASETS:
        assert get_dataset(d).group == paper.GROUP[d]
    assert len(paper.DATASETS) == 22 and len(set(paper.SHORT.values())) == 22
    assert all(d in paper.DATASETS for d in paper.FIG4_LEFT_OUT)
    assert paper.paper_mean(("SD", "dt"), ["cifar10", "mnist"]) == pytest.approx((88.90 + 19.70) / 2)


def test_timed_scores_match_score_all_and_time_each_metric():
    from genbench.engine.scoring import timed_scores
    from genbench.metrics.score import ScoreInputs, score_all
    from genbench.report.records import build_record

    spec = get_dataset("digits")
    rng = np.random.default_rng(0)

    def unit(a):
        return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)

    text = unit(rng.normal(size=(10, 16)))
    labels = rng.integers(0, 10, size=60)
    test = unit(text[labels] + rng.normal(scale=0.8, size=(60, 16)))
    ext = unit(np.repeat(text, 3, axis=0) + rng.normal(scale=0.5, size=(30, 16)))
    sums = np.stack([ext[c * 3:(c + 1) * 3].sum(axis=0) for c in range(10)]).astype(np.float64)
    inputs = ScoreInputs(spec, test, labels, text, sums, np.full(10, 3))
    names = ("zeroshot", "cler", "cler_text")
    scores, seconds = timed_scores(names, inputs)
    assert scores == pytest.approx(score_all(names, inputs))
    assert set(seconds) == set(names) and all(s >= 0 and math.isfinite(s) for s in seconds.values())
    rec = build_record(dataset=spec, job={"source": "generated"}, shots=3, clip="tiny", n_train=30, n_test=60,
                       scores=scores, manifest={}, eval_seconds=seconds)
    assert rec["eval_seconds"] == seconds


def test_mts_comes_from_the_retrieval_with_the_same_clip_whatever_the_order():
    from genbench.report.select import mts_by_dataset

    recs = [{"dataset": "eurosat", "source": "retrieved", "clip": "RN50:openai", "collection": "a", "mts": 0.5},
            {"dataset": "eurosat", "source": "retrieved", "clip": "ViT-B-32:openai", "collection": "b", "mts": 0.7},
            {"dataset": "eurosat", "source": "retrieved", "clip": "ViT-B-32:openai", "collection": "c", "mts": 0.9},
            {"dataset": "dtd", "source": "generated", "clip": "ViT-B-32:openai", "mts": 0.1}]
    for order in (recs, recs[::-1]):
        assert mts_by_dataset(order, "ViT-B-32:openai") == {"eurosat": 0.7}
        assert mts_by_dataset(order, "RN50:openai") == {"eurosat": 0.5}


def test_table2_keeps_other_settings_apart_and_averages_only_seeds():
    from genbench.report.table2 import table2

    def rec(variant: str, score: float, dataset: str = "eurosat") -> dict:
        return {"source": "generated", "generator": "tiny", "strategy": "ra", "variant": variant, "dataset": dataset,
                "shots": 20, "clip": "ViT-B-32:openai", "scores": {"cler": score, "zeroshot": 40.0}}

    recs = [rec("tiny_ra_from-0000aaaa_s0", 50.0), rec("tiny_ra_from-0000aaaa_s1", 60.0),
            rec("tiny_ra_from-1111bbbb_s0", 70.0, "dtd"), rec("tiny_ra_ipa-0123456789ab_from-0000aaaa_s0", 10.0)]
    table = table2(recs)
    labels = [label for label, _ in table.rows]
    assert len(labels) == 2 and labels[1].endswith("(ipa-0123456789ab)")
    plain = [c.value for c in table.rows[0][1] if c.value is not None]
    assert 55.0 in plain and 70.0 in plain and 10.0 not in plain  # seeds averaged, datasets' own RA links in one row
