"""Figures worth publishing (issue 15, item 6), checked on the rendered figures themselves (matplotlib Agg; every
figure a report function saves is caught as it is written, and the PNG is read back where pixels matter): sources
compared at one stated shot count, cost drawn as secondary to score, r with its interval and n on each correlation
panel with points told apart, the untrained-model caveat on every PNG drawn from untrained models, figures that a
1280 px window shows at their own size with no text under 8 pt, and one number format per table column."""

from __future__ import annotations

import copy
import os
import re

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from genbench.report import figstyle, plots, scatter
from genbench.report.build import build_report
from genbench.report.tables import column_format, fmt_column
from tests.synthetic_results import CLIP, synthetic_records


@pytest.fixture
def drawn(monkeypatch):
    """Every figure saved while the test runs, by file name, exactly as written (caveat footnotes included)."""
    figures: dict[str, Figure] = {}
    real = Figure.savefig

    def spy(self, fname, *args, **kwargs):
        figures[os.path.basename(str(fname))] = self
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return figures


def _texts(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _all_text(fig: Figure) -> str:
    return "\n".join(t.get_text() for t in _texts(fig))


@pytest.fixture(scope="module")
def records():
    return synthetic_records("/nowhere")


def _main_series(records, source):
    return [r for r in records if r["source"] == source and r["clip"] == CLIP and r["strategy"] in (None, "dt")]


# ------------------------------------------------------------------------------------------- one stated shot count


def test_fig2_compares_every_source_at_one_shot_count_stated_on_the_figure(records, tmp_path, drawn):
    # generated only at 1-20 shots, retrieved and original up to 500: the largest count all three share is 20
    recs = [r for r in records if not (r["source"] == "generated" and r["shots"] > 20)]
    (plot,) = plots.fig2_gain(recs, str(tmp_path))
    assert plot.stats["shots"] == 20 and plot.stats["left_out"] == {}
    for source, mean in plot.stats["means"].items():
        gains = [r["scores"]["cler"] - r["scores"]["zeroshot"] for r in _main_series(recs, source) if r["shots"] == 20]
        assert mean == pytest.approx(np.mean(gains))
    text = _all_text(drawn["fig2_gain.png"])
    assert "Every source at 20 shots per class" in text
    assert len(re.findall(r" at 20 shots: mean", text)) == 3 and " at 500 shots" not in text
    assert "same 20 shots per class" in plot.caption


def test_fig2_leaves_out_a_source_without_the_shared_count_and_says_so(records, tmp_path, drawn):
    # retrieved only at 1 and 5 shots, generated only at 20 and 100: no count all three share
    recs = [r for r in records if (r["source"] == "original")
            or (r["source"] == "retrieved" and r["shots"] in (1, 5))
            or (r["source"] == "generated" and r["shots"] in (20, 100))]
    (plot,) = plots.fig2_gain(recs, str(tmp_path))
    shots = plot.stats["shots"]
    assert shots == 100  # shared by generated and original; ties broken by the larger count
    assert list(plot.stats["means"]) == ["generated", "original"]
    assert plot.stats["left_out"] == {"retrieved": [1, 5]}
    text = _all_text(drawn["fig2_gain.png"])
    assert "left out" in text and "retrieved (has 1, 5)" in text and "Every source at 100 shots" in text
    assert "retrieved (has 1, 5 shots only)" in plot.caption


def test_fig9_panels_share_one_shot_count(records, tmp_path, drawn):
    recs = [r for r in records if not (r["source"] == "retrieved" and r["shots"] == 5)]
    (plot,) = scatter.fig9_real(recs, str(tmp_path))
    # 5 (the paper's) is not shared any more: both panels move to one count both sources have, never one each
    assert list(plot.stats) == ["original, 500 shots", "retrieved, 500 shots"]
    assert "Every panel at 500 shots per class" in _all_text(drawn["fig9_real.png"])


# ------------------------------------------------------------------------------------------ cost secondary to score


def test_fig3_draws_cost_as_a_smaller_grey_strip_under_the_score(records, tmp_path, drawn):
    (plot,) = plots.fig3_shots(records, str(tmp_path))
    fig = drawn["fig3_shots.png"]
    score_axes = [ax for ax in fig.axes if ax.get_yscale() == "linear"]
    cost_axes = [ax for ax in fig.axes if ax.get_yscale() == "log"]
    assert len(score_axes) == len(cost_axes) == 3  # a pair per concept group
    for score_ax, cost_ax in zip(score_axes, cost_axes):
        assert cost_ax.get_position().height < 0.5 * score_ax.get_position().height
        assert cost_ax.get_position().y1 <= score_ax.get_position().y0  # under it, never over the score lines
        scores = [ln for ln in score_ax.get_lines() if ln.get_marker() == "o"]
        costs = cost_ax.get_lines()
        assert len(scores) == len(costs) == 3
        for s, c in zip(scores, costs):
            assert s.get_color() == c.get_color()  # the source's colour ties them together ...
            assert c.get_linewidth() * 2 <= s.get_linewidth()  # ... but cost is thin,
            assert c.get_linestyle() != "-" and (c.get_alpha() or 1) < 0.8  # dashed and faded
            assert s.get_alpha() in (None, 1)
        assert "cost" in cost_ax.get_ylabel() and "CLER" in score_ax.get_ylabel()
    legend = " | ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "mean CLER" in legend and "cost of those images (grey strips" in legend
    assert "grey strips under them" in plot.caption


# --------------------------------------------------------------------------------------- correlations on the figure


def _panel_titles(fig: Figure) -> list[str]:
    return [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]


def test_correlation_panels_carry_r_its_interval_and_n(records, tmp_path, drawn):
    (plot,) = scatter.fig4_quality(records, str(tmp_path))
    titles = _panel_titles(drawn["fig4_quality.png"])
    assert len(titles) == 3
    for title, (name, s) in zip(titles, plot.stats.items()):
        c = s["correlation"]
        assert title.startswith(name)
        lo, hi = c["pearson_ci"]
        assert f"Pearson r = {c['pearson']:.2f} [{lo:.2f}, {hi:.2f}]" in title
        slo, shi = c["spearman_ci"]
        assert f"Spearman \u03c1 = {c['spearman']:.2f} [{slo:.2f}, {shi:.2f}]" in title
        assert f"n = {s['n']} datasets" in title and "95% CI" in title


def test_few_points_are_flagged_and_too_few_say_why_there_is_no_r(records, tmp_path, drawn):
    five = ("cifar10", "dtd", "eurosat", "oxford_pets", "mnist")
    (tmp_path / "five").mkdir()
    (tmp_path / "two").mkdir()
    (plot,) = scatter.fig9_real([r for r in records if r["dataset"] in five], str(tmp_path / "five"))
    titles = _panel_titles(drawn["fig9_real.png"])
    assert all("n = 5 datasets (few: r is fragile)" in t for t in titles)
    assert len(titles) == 2 and plot.caption.count("n=5)") == 2
    (plot,) = scatter.fig9_real([r for r in records if r["dataset"] in five[:2]], str(tmp_path / "two"))
    assert all("r: n/a (n = 2 datasets" in t for t in _panel_titles(drawn["fig9_real.png"]))


def test_points_are_told_apart_by_marker_colour_legend_and_label(records, tmp_path, drawn):
    scatter.fig4_quality(records, str(tmp_path))
    fig = drawn["fig4_quality.png"]
    ax = fig.axes[0]
    # one collection per concept group, each its own marker shape and colour
    markers = {tuple(map(tuple, c.get_paths()[0].vertices.round(3))) for c in ax.collections}
    colours = {tuple(c.get_facecolor()[0]) for c in ax.collections}
    assert len(ax.collections) == len(markers) == len(colours) == 3
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["common dataset", "fine-grained dataset", "rare dataset"]
    labels = {t.get_text() for t in ax.texts}
    assert {"C-10", "Cars", "DTD"} <= labels and len(labels) == 18  # every point named (4 small datasets left out)


# ------------------------------------------------------------------------------------ the untrained-model caveat


def _untrained(records):
    out = copy.deepcopy(records)
    for r in out:
        r["untrained_models"], r["untrained"] = True, ["generator tiny", "CLIP tiny"]
    return out


def _red_footnote_rows(path: str) -> int:
    """Rows of the PNG holding caveat-red text."""
    a = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red = (np.abs(a[..., 0] - 0xB0) < 40) & (a[..., 1] < 60) & (a[..., 2] < 60)
    return int(red.any(axis=1).sum())


@pytest.fixture(scope="module")
def untrained_report(tmp_path_factory):
    import json

    from tests.synthetic_results import write_synthetic

    base = tmp_path_factory.mktemp("untrained")
    run = write_synthetic(str(base))
    path = os.path.join(run, "results.json")
    with open(path) as f:
        recs = json.load(f)
    with open(path, "w") as f:
        json.dump(_untrained(recs), f)
    return build_report([run], str(base / "out"))


def test_every_png_from_untrained_models_carries_the_caveat(untrained_report):
    res = untrained_report
    assert res["untrained_models"] and len(res["plots"]) == 10
    for p in res["plots"]:
        assert _red_footnote_rows(p["file"]) >= 8, p["file"]  # the red footnote is there, in the pixels
    html = open(res["report_html"]).read()
    assert html.count("Inputs come from untrained models") == len(res["plots"])


def test_the_caveat_is_a_footnote_under_everything_else(records, tmp_path, drawn):
    recs = _untrained([r for r in records if r["source"] == "generated" and r["strategy"] == "dt"])
    scatter.fig4_quality(recs, str(tmp_path))
    plots.fig2_gain(recs, str(tmp_path))
    for name in ("fig4_quality.png", "fig2_gain.png"):
        fig = drawn[name]
        (note,) = [t for t in _texts(fig) if t.get_gid() == "caveat-0"]
        assert note.get_text().replace("\n", " ").startswith("CAVEAT: inputs from untrained models")
        renderer = fig.canvas.get_renderer()
        others = [t for t in _texts(fig) if t is not note]
        top = note.get_window_extent(renderer).y1
        assert all(t.get_window_extent(renderer).y0 >= top - 1 for t in others)  # nothing under it or on it
        assert note.get_color() == figstyle.UNTRAINED_COLOUR


def test_trained_figures_carry_no_caveat_and_toy_ones_their_own(records, tmp_path, drawn):
    plots.fig2_gain(records, str(tmp_path))
    assert figstyle.UNTRAINED_STAMP not in _all_text(drawn["fig2_gain.png"])
    assert _red_footnote_rows(str(tmp_path / "fig2_gain.png")) == 0
    toy = copy.deepcopy([r for r in records if r["dataset"] in ("cifar10", "mnist")])
    for r in toy:
        r["toy_models"] = ["toy-sd", "toy-clip"]
    (plot,) = plots.fig2_gain(toy, str(tmp_path))
    assert figstyle.TOY_STAMP in _all_text(drawn["fig2_gain.png"]).replace("\n", " ")
    assert "toy models" in plot.caption


# ----------------------------------------------------------------------------------------------- readable sizes


def test_figures_fit_a_1280px_window_with_no_text_under_8pt(records, tmp_path, drawn):
    res = build_report([_write(tmp_path / "run", _untrained(records))], str(tmp_path / "out"))
    assert len(drawn) == len(res["plots"]) == 8  # no collections here: no image grids
    for name, fig in drawn.items():
        small = [(t.get_text()[:30], t.get_fontsize()) for t in _texts(fig) if t.get_fontsize() < figstyle.MIN_FONT]
        assert not small, (name, small)
        with Image.open(tmp_path / "out" / name) as im:
            # the report's body is ~1230 px wide at a 1280 px window: the PNG is shown at its own size
            assert im.size[0] <= 1200, (name, im.size)


def test_image_grids_fit_too(tmp_path, drawn):
    from tests.synthetic_results import write_synthetic

    res = build_report([write_synthetic(str(tmp_path))], str(tmp_path / "out"))
    grids = [p["file"] for p in res["plots"] if p["kind"] == "grid"]
    assert len(grids) == 2
    for path in grids:
        with Image.open(path) as im:
            assert im.size[0] <= 1200
        small = [t.get_text() for t in _texts(drawn[os.path.basename(path)]) if t.get_fontsize() < figstyle.MIN_FONT]
        assert not small


def _write(path, recs):
    import json

    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "results.json"), "w") as f:
        json.dump(recs, f)
    return str(path)


# ------------------------------------------------------------------------------------- one format per table column


SCI = re.compile(r"^-?\d\.(\d+)e[+-]\d+$")
FIXED = re.compile(r"^[+-]?\d+\.(\d+)$")


def _cell_format(cell: str) -> tuple[str, int] | None:
    c = re.sub(r"\s*\(.*\)$", "", cell.strip()).strip("*_ ").rstrip("*")
    if c in ("", "-") or re.fullmatch(r"-?\d+", c):
        return None  # missing, or a count
    if m := SCI.match(c):
        return ("sci", len(m.group(1)))
    if m := FIXED.match(c):
        return ("fixed", len(m.group(1)))
    return ("text", 0)


def mixed_columns(markdown: str) -> list[str]:
    """Every markdown table column whose numbers are not all in one format (notation and decimals)."""
    tables, cur = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            tables.append(cur)
            cur = []
    bad = []
    for t in tables:
        rows = [line.strip().strip("|").split("|") for line in t if not re.fullmatch(r"\|(---\|)+", line)]
        for j, head in enumerate(rows[0]):
            kinds = {_cell_format(r[j]) for r in rows[1:] if j < len(r)} - {None, ("text", 0)}
            if len(kinds) > 1:
                bad.append(f"{head.strip()}: {sorted(kinds)}")
    return bad


def test_column_format_picks_one_format_for_a_whole_column():
    assert fmt_column([61.4, 0.5, None, 0]) == ["61.40", "0.50", "-", "0.00"]
    assert fmt_column([0.46, 0.02, 0.0041]) == ["0.4600", "0.0200", "0.0041"]  # not 0.46 beside 4.10e-03
    assert fmt_column([0.0, 0.0005, 12000.0]) == ["0.00e+00", "5.00e-04", "1.20e+04"]
    assert column_format([]) == ".2f" and column_format([2.5e6, 3.0]) == ".2e"


def test_report_tables_keep_one_format_per_column(tmp_path, records):
    # what made the quickstart's columns mix: Fréchet distances from 0.47 down to 0.004 (0.02 beside 9.67e-03),
    # GPU seconds of 0 beside thousands and CPU seconds of a thousandth
    recs = copy.deepcopy([r for r in records if r["dataset"] in ("mnist", "cifar10")])
    for i, r in enumerate(recs):
        if "fd_clip" in r["scores"]:
            r["scores"]["fd_clip"] = [0.47, 0.02, 0.0097, 0.0041][i % 4]
        r["cost"]["cpu_seconds"] = [0.001, 26.4, 1234.5][i % 3]
    res = build_report([_write(tmp_path / "run", recs)], str(tmp_path / "out"))
    md = open(res["report_md"]).read()
    assert mixed_columns(md) == []
    assert re.search(r"\| (\*\*|_)?0\.0041(\*\*|_)? \|", md) and "4.10e-03" not in md
