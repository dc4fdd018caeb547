"""The paper's figures as PNGs, drawn with matplotlib's Agg canvas (no display, no pyplot global state).

Each function returns :class:`Plot` items: a written file with its alt text and caption, or a skip with the reason, so
the report can say why a figure is missing instead of leaving a hole.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genbench.models.refs import slugify
from genbench.report.document import Plot
from genbench.report.tables import SCORE_TITLES, finite, series_key, series_labels

log = logging.getLogger(__name__)

DPI = 110
# Fig. 4 panels: each cheap data-quality measure against linear-probe accuracy.
QUALITY_MEASURES = ("cler", "clip_score", "fd_clip", "fid")
MEASURE_AXIS = {
    "cler": "CLER accuracy (%)",
    "clip_score": "CLIP score (100 x cos)",
    "fd_clip": "Fréchet distance (CLIP features)",
    "fid": "FID (Inception)",
}


def slug(name: str) -> str:
    """A figure's file name part."""
    return slugify(name, keep="_.-", sep="-")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_dir: str, name: str) -> str:
    fig.savefig(os.path.join(out_dir, name), dpi=DPI, bbox_inches="tight")
    return name


def colour_map(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One fixed colour per series label across every figure of a report."""
    from matplotlib import colormaps

    labels = sorted(set(series_labels(records).values()))
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def _gain(rec: dict[str, Any], score: str) -> float | None:
    s, z = finite(rec["scores"].get(score)), finite(rec["scores"].get("zeroshot"))
    return None if s is None or z is None else s - z


def gain_bars(records: list[dict[str, Any]], out_dir: str, colours: dict[str, Any]) -> list[Plot]:
    """Fig. 2: gain over zero-shot per dataset, grouped bars per source/strategy, each at its largest shot count."""
    title = "Gain over zero-shot"
    panels = [s for s in ("cler", "linear_probe") if any(_gain(r, s) is not None for r in records)]
    if not panels:
        return [Plot("gain", title, skipped="no record has both a zero-shot and a CLER or linear-probe score")]
    labels = series_labels(records)
    top: dict[tuple[str, str], dict[str, Any]] = {}  # (dataset, series label) -> record at the largest shots
    for r in records:
        k = (r["dataset"], labels[series_key(r)])
        if k not in top or int(r["shots"]) > int(top[k]["shots"]):
            top[k] = r
    datasets = sorted({d for d, _ in top})
    series = sorted({s for _, s in top})
    fig = _figure(max(6.0, 1.2 * len(datasets) * max(1, len(series)) / 3 + 3), 3.2 * len(panels))
    width = 0.8 / len(series)
    for p, score in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, p + 1)
        for j, s in enumerate(series):
            xs, ys = [], []
            for i, d in enumerate(datasets):
                g = _gain(top[(d, s)], score) if (d, s) in top else None
                if g is not None:
                    xs.append(i - 0.4 + width * (j + 0.5))
                    ys.append(g)
            ax.bar(xs, ys, width=width, color=colours[s], label=s if p == 0 else None)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(datasets)), datasets)
        ax.set_ylabel(f"{SCORE_TITLES[score]} - zero-shot\n(points)")
        ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    name = _save(fig, out_dir, "fig2_gain.png")
    scores = " and ".join(SCORE_TITLES[s] for s in panels)
    alt = f"Bar chart: {scores} minus zero-shot, in points, for {len(datasets)} dataset(s) and {len(series)} source/strategy series."
    cap = f"Gain of {scores} over CLIP zero-shot per dataset; each bar is a source/strategy at its largest shot count."
    out = [Plot("gain", title, name, alt, cap)]
    if "linear_probe" not in panels:
        out.append(Plot("gain", "Linear-probe gain over zero-shot", skipped="no linear_probe scores: run with metrics: [linear_probe]"))
    return out


def _cost_usd(rec: dict[str, Any]) -> float | None:
    """Total USD of the external images behind a record: USD per image x images used (shots per class x classes)."""
    per = finite((rec.get("cost") or {}).get("usd_per_image"))
    n = rec.get("n_train")
    return None if per is None or not isinstance(n, int) else per * n


def shot_curves(records: list[dict[str, Any]], out_dir: str, colours: dict[str, Any]) -> list[Plot]:
    """Fig. 3: per dataset, score against shots (log x) per source/strategy, total cost on a second y axis."""
    out = []
    labels = series_labels(records)
    for d in sorted({r["dataset"] for r in records}):
        recs = [r for r in records if r["dataset"] == d]
        title = f"Score against shots: {d}"
        by_series: dict[str, list[dict[str, Any]]] = {}
        for r in recs:
            by_series.setdefault(labels[series_key(r)], []).append(r)
        if not any(len({int(r["shots"]) for r in rs}) >= 2 for rs in by_series.values()):
            out.append(Plot("shots", title, skipped=f"every series of {d} has a single shot count: give shots as a list, e.g. [1, 4, 16]"))
            continue
        panels = [s for s in ("cler", "linear_probe") if any(finite(r["scores"].get(s)) is not None for r in recs)]
        if not panels:
            out.append(Plot("shots", title, skipped=f"{d} has no CLER or linear-probe scores"))
            continue
        fig = _figure(5.2 * len(panels) + 1.5, 3.8)
        any_cost = False
        for p, score in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), p + 1)
            cost_ax = ax.twinx()
            for lab, rs in sorted(by_series.items()):
                rs = sorted(rs, key=lambda r: int(r["shots"]))
                pts = [(int(r["shots"]), finite(r["scores"].get(score))) for r in rs]
                pts = [(x, y) for x, y in pts if y is not None]
                if pts:
                    ax.plot(*zip(*pts), marker="o", color=colours[lab], label=lab if p == 0 else None)
                costs = [(int(r["shots"]), _cost_usd(r)) for r in rs]
                costs = [(x, c) for x, c in costs if c is not None]
                if costs:
                    any_cost = True
                    cost_ax.plot(*zip(*costs), linestyle="--", marker="x", alpha=0.6, color=colours[lab])
            zs = [finite(r["scores"].get("zeroshot")) for r in recs]
            zs = [z for z in zs if z is not None]
            if zs:
                ax.axhline(sum(zs) / len(zs), color="grey", linestyle=":", label="zero-shot" if p == 0 else None)
            if any_cost and p == 0:  # one legend entry explains every dashed line
                ax.plot([], [], color="grey", linestyle="--", marker="x", label="total cost, USD (right axis)")
            ax.set_xscale("log")
            ticks = sorted({int(r["shots"]) for r in recs})
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("shots per class (log)")
            ax.set_ylabel(f"{SCORE_TITLES[score]} (%)")
            cost_ax.set_ylabel("total cost, USD (dashed)")
            ax.grid(alpha=0.3)
        fig.legend(loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False, fontsize=9)
        fig.suptitle(title)
        fig.tight_layout()
        name = _save(fig, out_dir, f"fig3_shots_{slug(d)}.png")
        alt = (f"Line chart for {d}: {' and '.join(SCORE_TITLES[s] for s in panels)} in percent against shots per class on a "
               f"log axis, one solid line per source/strategy" + (", dashed lines for total USD on the right axis." if any_cost else "."))
        cap = (f"{d}: score against shots per class (log scale); dashed lines on the right axis are the total cost "
               "(USD per image x images used). The dotted grey line is CLIP zero-shot.")
        out.append(Plot("shots", title, name, alt, cap))
    return out


def _corr(xs: list[float], ys: list[float]) -> dict[str, Any] | None:
    """Pearson/Spearman with bootstrap CIs, or None when it cannot be computed (module absent, n < 3, constant input)."""
    if len(xs) < 3:
        return None
    try:
        from genbench.metrics.correlation import correlate
    except ImportError:
        log.info("report: genbench.metrics.correlation not available; correlations shown as n/a")
        return None
    from genbench.errors import UsageError

    try:
        c = correlate(xs, ys, n_boot=500, seed=0)
    except UsageError as e:
        log.info("report: no correlation: %s", e)
        return None
    return c if math.isfinite(c["pearson"]) and math.isfinite(c["spearman"]) else None


def corr_text(c: dict[str, Any] | None, n: int) -> str:
    if c is None:
        return f"Pearson n/a, Spearman n/a (n={n})"
    return f"Pearson {c['pearson']:.2f}, Spearman {c['spearman']:.2f} (n={c['n']})"


def corr_ci_text(c: dict[str, Any] | None) -> str:
    if c is None:
        return "Pearson n/a, Spearman n/a (needs 3 or more points that are not all equal)"
    (plo, phi), (slo, shi) = c["pearson_ci"], c["spearman_ci"]
    return f"Pearson {c['pearson']:.2f} [{plo:.2f}, {phi:.2f}], Spearman {c['spearman']:.2f} [{slo:.2f}, {shi:.2f}] (95% bootstrap CI, n={c['n']})"


def _scatter_panel(ax, pts: list[tuple[float, float, str]], colours: dict[str, Any], label_points: bool) -> None:
    for lab in sorted({p[2] for p in pts}):
        sel = [(x, y) for x, y, pl in pts if pl == lab]
        ax.scatter(*zip(*sel), color=colours.get(lab, "tab:blue"), label=lab if label_points else None, s=28, alpha=0.85)
    ax.grid(alpha=0.3)


def quality_scatter(records: list[dict[str, Any]], out_dir: str, colours: dict[str, Any]) -> list[Plot]:
    """Fig. 4: CLER, CLIP score and Fréchet distance (x) against linear-probe accuracy (y), one point per record."""
    title = "Data-quality measures against linear probe"
    probe = [r for r in records if finite(r["scores"].get("linear_probe")) is not None]
    if not probe:
        return [Plot("quality", title, skipped="no linear_probe scores: run with metrics: [linear_probe]")]
    labels = series_labels(records)
    panels, skipped = [], []
    for m in QUALITY_MEASURES:
        pts = [(finite(r["scores"].get(m)), finite(r["scores"]["linear_probe"]), labels[series_key(r)]) for r in probe]
        pts = [(x, y, lab) for x, y, lab in pts if x is not None]
        if pts:
            panels.append((m, pts))
        elif m != "fid":  # Inception FID needs local Inception weights; its absence is normal, not worth a line
            skipped.append(Plot("quality", f"{MEASURE_AXIS[m]} against linear probe",
                                skipped=f"no record has both {m} and linear_probe: run with metrics: [{m}, linear_probe]"))
    if not panels:
        return skipped
    fig = _figure(4.3 * len(panels) + 1.5, 4.0)
    stats = {}
    for i, (m, pts) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        _scatter_panel(ax, pts, colours, label_points=(i == 0))
        c = _corr([p[0] for p in pts], [p[1] for p in pts])
        stats[m] = {"n": len(pts), "correlation": c}
        ax.set_title(f"{SCORE_TITLES[m]} vs linear probe\n{corr_text(c, len(pts))}", fontsize=9)
        ax.set_xlabel(MEASURE_AXIS[m])
        ax.set_ylabel("linear-probe score (%)")
    fig.legend(loc="upper left", bbox_to_anchor=(1.0, 0.9), frameon=False, fontsize=9)
    fig.tight_layout()
    name = _save(fig, out_dir, "fig4_quality.png")
    names = ", ".join(SCORE_TITLES[m] for m, _ in panels)
    alt = f"Scatter plots of {names} (x) against linear-probe score (y), one point per result record, coloured by source/strategy."
    cap = "; ".join(f"{SCORE_TITLES[m]}: {corr_ci_text(stats[m]['correlation'])}" for m, _ in panels)
    return [Plot("quality", title, name, alt, cap, stats=stats), *skipped]


def mts_scatter(records: list[dict[str, Any]], out_dir: str, colours: dict[str, Any]) -> list[Plot]:
    """Fig. 6: CLER gain over zero-shot (y) against mean text similarity of the retrieval queries (x)."""
    title = "CLER gain against mean text similarity"
    # Every point is retrieved data, so colour by dataset: MTS is a property of a dataset's class names (paper Fig. 6).
    pts = [(finite(r.get("mts")), _gain(r, "cler"), r["dataset"]) for r in records]
    pts = [(x, y, d) for x, y, d in pts if x is not None and y is not None]
    if not pts:
        return [Plot("mts", title, skipped="no record has mts with CLER and zero-shot scores: MTS comes from retrieved data")]
    from matplotlib import colormaps

    datasets = sorted({p[2] for p in pts})
    cmap = colormaps["tab10" if len(datasets) <= 10 else "tab20"]
    fig = _figure(6.5, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    _scatter_panel(ax, pts, {d: cmap(i % cmap.N) for i, d in enumerate(datasets)}, label_points=True)
    c = _corr([p[0] for p in pts], [p[1] for p in pts])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_title(f"{title}\n{corr_text(c, len(pts))}", fontsize=10)
    ax.set_xlabel("mean text similarity (MTS)")
    ax.set_ylabel("CLER - zero-shot (points)")
    ax.legend(loc="best", frameon=False, fontsize=9)
    fig.tight_layout()
    name = _save(fig, out_dir, "fig6_mts.png")
    alt = (f"Scatter plot of CLER gain over zero-shot (y) against mean text similarity (x) for {len(pts)} record(s), "
           "coloured by dataset.")
    return [Plot("mts", title, name, alt, f"CLER gain vs MTS: {corr_ci_text(c)}", stats={"n": len(pts), "correlation": c})]
