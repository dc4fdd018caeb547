"""`genbench report` on synthetic results.json files: files written, every figure drawn from real records, best and
second-best marks, merging of several results directories, skip lines and the tiny-model notice."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from genbench.errors import UsageError
from genbench.report.build import build_report
from genbench.report.document import to_markdown
from genbench.report.records import summary_blocks
from genbench.report.terminal import format_table

NOTICE = "NOTE: untrained models were used"
from genbench.report.tables import BEST, SECOND, dataset_table, rank_marks, table_markdown

SHOTS = (1, 4, 16)


def _record(dataset, source, strategy, shots, rng, *, probe=True, tiny=False, mts=None, variant=None):
    zs = {"digits": 40.0, "cifar10": 70.0, "pets": 55.0}[dataset]
    cler = zs + rng.normal(5, 4) + 2 * np.log2(shots)
    scores = {"zeroshot": zs, "cler": float(cler), "cler_text": float(cler + 1)}
    if probe:
        scores.update(linear_probe=float(cler + rng.normal(3, 2)), clip_score=float(rng.uniform(20, 35)),
                      fd_clip=float(rng.uniform(0.2, 1.5)))
    variant = variant or f"{strategy or 'kshot'}_s0"
    rec = {
        "dataset": dataset, "group": "test", "source": source, "generator": "sd21" if source == "generated" else None,
        "strategy": strategy, "shots": shots, "clip": "ViT-B-32", "metric": "accuracy", "n_train": shots * 10,
        "n_test": 100, "untrained_models": tiny, "untrained": ["generator sd21"] if tiny else [], "variant": variant, "collection": f"/c/{dataset}/{source}/{variant}",
        "scores": scores, "cost": {"device": "cuda:0", "device_seconds": 3.0, "gpu_seconds": 3.0,
                                   "usd_per_image": 2.5e-4 if source == "generated" else 4e-5},
    }
    if mts is not None:
        rec["mts"] = mts
    return rec


def _write(path, records):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "results.json"), "w") as f:
        json.dump(records, f)
    return str(path)


def _full_records(tiny=False):
    rng = np.random.default_rng(0)
    recs = []
    for d in ("digits", "cifar10", "pets"):
        for src, strat in (("generated", "st"), ("generated", "dt"), ("original", None)):
            recs += [_record(d, src, strat, k, rng, tiny=tiny) for k in SHOTS]
        recs += [_record(d, "retrieved", None, k, rng, mts=float(rng.uniform(0.5, 0.9))) for k in SHOTS]
    return recs


def _referenced_pngs(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)" alt="([^"]*)"', html)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    res = build_report([_write(base / "run", _full_records())], str(base / "out"))
    return res, base / "out"


def test_html_and_markdown_written_with_valid_pngs(full_report):
    res, out = full_report
    html = open(res["report_html"]).read()
    refs = _referenced_pngs(html)
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html and "http" not in html
    assert {os.path.basename(p["file"]) for p in res["plots"]} == {src for src, _ in refs}
    for src, alt in refs:
        assert not os.path.isabs(src) and alt.strip()
        with Image.open(out / src) as im:
            im.verify()  # raises on a truncated or non-PNG file
            assert im.format == "PNG"
        with Image.open(out / src) as im:
            assert im.size[0] > 300 and im.size[1] > 200
    md = open(res["report_md"]).read()
    assert all(f"]({src})" in md for src, _ in refs)
    assert res["records"] == 36 and res["untrained_models"] is False and NOTICE not in md


def _kinds(res):
    return [p["kind"] for p in res["plots"]]


def test_gain_bars_drawn(full_report):
    res, _ = full_report
    assert _kinds(res).count("gain") == 1
    assert not [s for s in res["skipped"] if s["kind"] == "gain"]  # probe scores present: both panels drawn


def test_shot_curves_drawn_per_concept_group(full_report):
    res, _ = full_report
    files = sorted(os.path.basename(p["file"]) for p in res["plots"] if p["kind"] == "shots")
    assert files == ["fig3_shots.png"]  # one figure, a panel per concept group (Fig. 3)


def test_quality_scatter_with_correlations(full_report):
    res, out = full_report
    assert _kinds(res).count("quality") == 1
    md = open(out / "report.md").read()
    # one caption entry per measure, each with computed coefficients (one point per dataset, not constant)
    for title in ("CLER vs linear probe:", "CLIP score vs linear probe:", "FD (CLIP) vs linear probe:"):
        assert re.search(re.escape(title) + r" Pearson -?\d\.\d\d \[", md), title


def test_mts_scatter_drawn(full_report):
    res, out = full_report
    assert _kinds(res).count("mts") == 1
    assert re.search(r"CLER gain vs MTS: Pearson -?\d\.\d\d", open(out / "report.md").read())


def test_cost_section(full_report):
    _, out = full_report
    md = open(out / "report.md").read()
    assert "## Cost" in md and "2.54e-04" in md and "2.56e-03" in md and "Both readings are shown" in md


def test_rank_marks_hand_made():
    assert rank_marks([50.0, 70.0, 60.0, 70.0, None]) == [None, BEST, SECOND, BEST, None]
    assert rank_marks([0.9, 0.2, 0.5], lower_is_better=True) == [None, BEST, SECOND]
    assert rank_marks([40.0, 40.0, 40.0]) == [None, None, None]  # all tie: nothing to single out
    assert rank_marks([float("nan"), 3.0, 1.0]) == [None, BEST, SECOND]


def test_table_marks_in_markdown_and_html(tmp_path):
    base = {"dataset": "digits", "source": "generated", "generator": "g", "n_train": 10, "metric": "accuracy"}
    recs = [
        {**base, "strategy": "st", "shots": 1, "scores": {"zeroshot": 40.0, "cler": 61.0, "fd_clip": 0.9}},
        {**base, "strategy": "dt", "shots": 1, "scores": {"zeroshot": 40.0, "cler": 75.5, "fd_clip": 0.3}},
        {**base, "strategy": "ce", "shots": 1, "scores": {"zeroshot": 40.0, "cler": 70.25, "fd_clip": 0.5}},
    ]
    md = table_markdown(dataset_table("t", recs))
    rows = {line.split("|")[1].strip(): line for line in md.splitlines()[2:]}
    assert "**75.50**" in rows["generated g/dt"] and "**0.30**" in rows["generated g/dt"]
    assert "_70.25_" in rows["generated g/ce"] and "_0.50_" in rows["generated g/ce"]
    assert "*" not in rows["generated g/st"] and "_" not in rows["generated g/st"].replace("g/st", "")
    assert "**40.00**" not in md  # zero-shot ties everywhere
    res = build_report([_write(tmp_path / "r", recs)], str(tmp_path / "o"))
    html = open(res["report_html"]).read()
    assert "<strong>75.50</strong>" in html and "<u>70.25</u>" in html and "<strong>0.30</strong>" in html


def test_tiny_notice_and_skips_without_probe(tmp_path):
    rng = np.random.default_rng(1)
    recs = [_record("digits", "generated", "st", 16, rng, probe=False, tiny=True),
            *[_record("digits", "original", None, k, rng, probe=False, tiny=True) for k in SHOTS]]
    res = build_report([_write(tmp_path / "r", recs)], str(tmp_path / "o"))
    md, html = open(res["report_md"]).read(), open(res["report_html"]).read()
    assert NOTICE in md and NOTICE in html and res["untrained_models"] is True
    reasons = {s["kind"]: s["reason"] for s in res["skipped"]}
    assert "linear-probe" in reasons["quality"] and "MTS" in reasons["mts"]
    assert "configs/paper/fig4.yaml" in md
    assert sorted(_kinds(res)) == ["gain", "shots"]
    assert "untrained models" in md.split("(fig2_gain.png)")[1].split("##")[0]  # the figure's caption says so


def test_single_shot_count_skips_curves(tmp_path):
    rng = np.random.default_rng(2)
    recs = [_record("pets", "generated", s, 16, rng) for s in ("st", "dt")]
    res = build_report([_write(tmp_path / "r", recs)], str(tmp_path / "o"))
    assert {"mts", "shots"} <= {s["kind"] for s in res["skipped"]}
    md = open(res["report_md"]).read()
    assert "no series has two or more shot counts" in md
    assert "Pearson n/a" in md and _kinds(res).count("quality") == 1  # 2 points: drawn, but no coefficients


def test_merge_keeps_last_and_says_so(tmp_path):
    rng = np.random.default_rng(3)
    first = [_record("digits", "original", None, k, rng) for k in SHOTS]
    rerun = [dict(first[2], scores={**first[2]["scores"], "cler": 99.0})]
    other = [_record("cifar10", "generated", "st", 4, rng)]
    res = build_report([_write(tmp_path / "a", first), _write(tmp_path / "b", rerun + other)], str(tmp_path / "o"))
    assert res["records"] == 4 and len(res["notes"]) == 1 and "1 record(s)" in res["notes"][0]
    md = open(res["report_md"]).read()
    assert "replaced" in md and "**99.00**" in md


def test_bad_inputs_raise_usage_error(tmp_path):
    with pytest.raises(UsageError, match="results_dirs"):
        build_report([str(tmp_path / "missing")], str(tmp_path / "o"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text('{"not": "a list"}')
    with pytest.raises(UsageError, match="a JSON list"):
        build_report([str(tmp_path / "bad")], str(tmp_path / "o"))
    _write(tmp_path / "nokey", [{"dataset": "digits", "source": "original"}])
    with pytest.raises(UsageError, match="shots"):
        build_report([str(tmp_path / "nokey")], str(tmp_path / "o"))
    _write(tmp_path / "badshots", [{"dataset": "digits", "source": "original", "shots": "16", "scores": {}}])
    with pytest.raises(UsageError, match=r"\[0\]\.shots"):
        build_report([str(tmp_path / "badshots")], str(tmp_path / "o"))
    with pytest.raises(UsageError, match="--out"):
        build_report([str(tmp_path / "nokey")], "s3://bucket/report")


def test_terminal_table_and_run_summary_carry_the_notice():
    recs = _full_records(tiny=True)[:3]
    assert NOTICE in format_table(recs)
    md = to_markdown(summary_blocks(recs))
    assert NOTICE in md and "generator sd21" in md and "2.56e-3" in md


def test_records_written_before_the_rename_still_carry_the_notice(tmp_path):
    """Older results.json files said ``tiny_models``; their reports keep the warning."""
    rng = np.random.default_rng(4)
    recs = [_record("digits", "original", None, k, rng, probe=False) for k in SHOTS]
    for r in recs:
        r["tiny_models"] = r.pop("untrained_models") or True
        del r["untrained"]
    res = build_report([_write(tmp_path / "r", recs)], str(tmp_path / "o"))
    assert res["untrained_models"] is True and NOTICE in open(res["report_md"]).read()


def test_results_are_strict_json_even_with_a_nan_score(tmp_path):
    """JSON has no NaN: a score that came out undefined is written as null, and the file parses strictly."""
    from genbench.report.records import write_results

    rng = np.random.default_rng(5)
    rec = _record("digits", "original", None, 1, rng)
    rec["scores"]["fd_clip"], rec["mts"] = float("nan"), float("inf")
    write_results(str(tmp_path), [rec])
    text = (tmp_path / "results.json").read_text()
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in results.json"))
    assert loaded[0]["scores"]["fd_clip"] is None and loaded[0]["mts"] is None
