"""The paper's summary figures as PNGs (Fig. 2 gain per dataset, Fig. 3 score and cost against shots per concept group,
Fig. 5 evaluation time per metric), drawn with matplotlib's Agg canvas (no display, no pyplot global state), and the
helpers every figure module shares.

Each function returns :class:`Plot` items: a written file with its alt text and caption, or a skip with the reason and
the config that makes the missing records, so the report says why a figure is missing instead of leaving a hole.
"""

from __future__ import annotations

import logging
import os
import statistics
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genbench.models.refs import slugify
from genbench.report.document import Plot
from genbench.report.paper import CONFIGS, GROUPS, backbone, group_of, short_name
from genbench.report.records import untrained
from genbench.report.select import Pick, gain, pick
from genbench.report.tables import SCORE_COLUMNS, SCORE_TITLES, finite

log = logging.getLogger(__name__)

DPI = 110
SOURCES = ("generated", "retrieved", "original")
SOURCE_COLOURS = {"generated": "#7b3294", "retrieved": "#1b7837", "original": "#e66101"}
GROUP_COLOURS = {"common": "#4477aa", "fine-grained": "#ee6677", "rare": "#228833"}
UNTRAINED_STAMP = "inputs from untrained models (tiny or random weights): a plumbing check, not the paper's science"


def slug(name: str) -> str:
    """A figure's file name part."""
    return slugify(name, keep="_.-", sep="-")


def figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out_dir: str, name: str, untrained_inputs: bool = False) -> str:
    """Write ``name`` into ``out_dir``; a figure drawn from untrained models' numbers says so on its face."""
    if untrained_inputs:
        # above everything (legends sit below some figures); bbox_inches="tight" grows the canvas to keep it
        fig.text(0.5, 1.01, UNTRAINED_STAMP, ha="center", va="bottom", color="#b00000", fontsize=8, fontweight="bold")
    fig.savefig(os.path.join(out_dir, name), dpi=DPI, bbox_inches="tight")
    return name


def group_colour(group: str) -> str:
    return GROUP_COLOURS.get(group, "#888888")


def source_colour(source: str) -> str:
    return SOURCE_COLOURS.get(source, "#555555")


def sources_of(records: list[dict[str, Any]]) -> list[str]:
    """The paper's three sources first, then any plugin source, by name."""
    present = {r.get("source") for r in records}
    return [s for s in SOURCES if s in present] + sorted(str(s) for s in present - set(SOURCES))


def caption_untrained(caption: str, flag: bool) -> str:
    return caption + (" Inputs come from untrained models: the numbers prove the plumbing, not the science." if flag else "")


def group_legend(where: Any, groups: list[str], below: bool = False) -> None:
    """Concept-group colours: inside an axes' upper right, or (``below``, ``where`` a figure) under the panels."""
    from matplotlib.patches import Patch

    handles = [Patch(color=group_colour(g), label=g) for g in groups]
    if below:
        where.legend(handles=handles, frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                     ncol=len(handles))
    else:
        where.legend(handles=handles, frameon=False, fontsize=8, loc="upper right")


# ---------------------------------------------------------------------------------------------------- Fig. 2: gain


def fig2_gain(records: list[dict[str, Any]], out_dir: str) -> list[Plot]:
    """Fig. 2: CLER minus zero-shot per dataset, sorted, one panel per source, with each source's mean."""
    title = "Gain of CLER over zero-shot per dataset (Fig. 2)"
    picks = [p for p in (pick(records, s, needs=("cler", "zeroshot")) for s in sources_of(records)) if p]
    if not picks:
        return [Plot("gain", title, skipped=f"no record has both a CLER and a zero-shot score: {CONFIGS['fig2']} "
                                            "produces them")]
    n = max(len(p.by_dataset) for p in picks)
    fig = figure(max(6.5, 0.36 * n + 2.0), 2.7 * len(picks) + 0.4)
    means = {}
    for i, p in enumerate(picks):
        ax = fig.add_subplot(len(picks), 1, i + 1)
        items = sorted(((gain(r), d) for d, r in p.by_dataset.items()), key=lambda t: (-t[0], t[1]))
        ys = [g for g, _ in items]
        ax.bar(range(len(items)), ys, color=[group_colour(group_of(p.by_dataset[d])) for _, d in items])
        mean = statistics.fmean(ys)
        means[p.source] = mean
        ax.axhline(0, color="black", linewidth=0.8)
        ax.axhline(mean, color=source_colour(p.source), linestyle="--", linewidth=1.2)
        ax.set_xticks(range(len(items)), [short_name(d) for _, d in items], rotation=60, ha="right", fontsize=8)
        ax.set_xlim(-0.6, max(len(items), 2) - 0.4)
        ax.set_ylabel("CLER - zero-shot\n(points)", fontsize=9)
        ax.set_title(f"{p.label}, {p.shots} shots, CLIP {backbone(p.clip)}: mean {mean:+.2f} points over "
                     f"{len(items)} dataset(s) (dashed)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        if i == 0:
            seen = {group_of(r) for q in picks for r in q.by_dataset.values()}
            group_legend(ax, [g for g in GROUPS if g in seen] + sorted(seen - set(GROUPS)))
    fig.tight_layout()
    flag = any(p.untrained for p in picks)
    name = save(fig, out_dir, "fig2_gain.png", flag)
    summary = ", ".join(f"{s} {m:+.2f}" for s, m in means.items())
    alt = (f"{len(picks)} bar chart(s), one per source: CLER minus zero-shot in points per dataset, sorted from the "
           f"largest gain, bars coloured by concept group; dashed lines at each source's mean ({summary}).")
    missing = [s for s in SOURCES if s not in means]
    cap = (f"CLER gain over CLIP zero-shot per dataset, sorted, one panel per source (each at the shot count that covers "
           f"the most datasets). Mean gain per source: {summary}.")
    if missing:
        cap += f" No {', '.join(missing)} records with CLER and zero-shot ({CONFIGS['fig2']} makes all three sources)."
    return [Plot("gain", title, name, alt, caption_untrained(cap, flag), stats={"means": means})]


# --------------------------------------------------------------------------------------------- Fig. 3: shots, cost


def _usd(rec: dict[str, Any]) -> float | None:
    """USD of the external images behind a record: its USD per image x the images it used."""
    per = finite((rec.get("cost") or {}).get("usd_per_image"))
    n = rec.get("n_train")
    return None if per is None or not isinstance(n, int) else per * n


def dollars(usd: float) -> str:
    return f"${usd:,.0f}" if usd >= 10 else f"${usd:.3g}"


def _curve(p: Pick, group: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]], int]:
    """(shots, mean CLER over the group's datasets), (shots, total USD of their images), datasets seen."""
    by_shot: dict[int, list[dict[str, Any]]] = {}
    for r in p.series_records:
        if group_of(r) == group:
            by_shot.setdefault(int(r["shots"]), []).append(r)
    score = [(k, statistics.fmean(float(r["scores"]["cler"]) for r in rs)) for k, rs in sorted(by_shot.items())]
    cost = []
    for k, rs in sorted(by_shot.items()):
        usd = [_usd(r) for r in rs]
        if usd and all(u is not None for u in usd):
            cost.append((k, sum(usd)))
    return score, cost, len({r["dataset"] for rs in by_shot.values() for r in rs})


def fig3_shots(records: list[dict[str, Any]], out_dir: str) -> list[Plot]:
    """Fig. 3: mean CLER against shots per concept group, one curve per source, total cost on a log right axis."""
    title = "CLER and cost against shots per concept group (Fig. 3)"
    picks = [p for p in (pick(records, s) for s in sources_of(records)) if p]
    picks = [p for p in picks if len({int(r["shots"]) for r in p.series_records}) >= 2]
    if not picks:
        return [Plot("shots", title, skipped="no series has two or more shot counts: "
                                             f"{CONFIGS['fig3']} sweeps shots 1 to 500")]
    groups = [g for g in (*GROUPS, *sorted({group_of(r) for p in picks for r in p.series_records} - set(GROUPS)))
              if any(group_of(r) == g for p in picks for r in p.series_records)]
    fig = figure(4.4 * len(groups) + 1.8, 3.9)
    per_image = {}
    for i, g in enumerate(groups):
        ax = fig.add_subplot(1, len(groups), i + 1)
        cost_ax = ax.twinx()
        cost_ax.set_yscale("log")
        seen = 0
        for p in picks:
            score, cost, n = _curve(p, g)
            seen = max(seen, n)
            if score:
                ax.plot(*zip(*score), marker="o", markersize=4, color=source_colour(p.source), label=p.label)
            if cost:
                cost_ax.plot(*zip(*cost), linestyle="--", linewidth=1, alpha=0.7, color=source_colour(p.source))
                k, usd = cost[-1]
                cost_ax.annotate(dollars(usd), (k, usd), fontsize=7, color=source_colour(p.source),
                                 xytext=(-4, 3), textcoords="offset points", ha="right", va="bottom")
            usd_rates = [finite((r.get("cost") or {}).get("usd_per_image")) for r in p.series_records]
            usd_rates = [u for u in usd_rates if u is not None]
            if usd_rates:
                per_image[p.source] = statistics.fmean(usd_rates)
        zs = {r["dataset"]: finite(r["scores"].get("zeroshot")) for p in picks for r in p.series_records
              if group_of(r) == g}
        zs = [z for z in zs.values() if z is not None]
        if zs:
            ax.axhline(statistics.fmean(zs), color="grey", linestyle=":", label="zero-shot")
        ax.set_xscale("log")
        ticks = sorted({int(r["shots"]) for p in picks for r in p.series_records})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("shots per class (log)")
        ax.set_ylabel(f"mean CLER over {seen} dataset(s) (%)")
        cost_ax.set_ylabel("total USD of the images (dashed, log)")
        ax.set_title(g, fontsize=10)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.plot([], [], color="grey", linestyle="--", label="total cost (right axis)")
            handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(5, len(labels)),
               frameon=False, fontsize=8)
    fig.tight_layout()
    flag = any(p.untrained for p in picks)
    name = save(fig, out_dir, "fig3_shots.png", flag)
    rates = ", ".join(f"{s} {u:.2e}" for s, u in per_image.items())
    alt = (f"{len(groups)} line chart(s), one per concept group: mean CLER against shots per class on a log axis, one "
           f"solid line per source, and dashed lines for the total USD of the images on a log right axis.")
    cap = (f"Mean CLER over each concept group's datasets against shots per class; dashed lines: what those images "
           f"cost (USD per image x images, right axis), labelled at the largest shot count. USD per image: {rates or 'n/a'}."
           " Dotted grey: CLIP zero-shot.")
    missing = [s for s in SOURCES if s not in {p.source for p in picks}]
    if missing:
        cap += f" No shot sweep of {', '.join(missing)} ({CONFIGS['fig3']} sweeps all three)."
    return [Plot("shots", title, name, alt, caption_untrained(cap, flag))]


# ------------------------------------------------------------------------------------------ Fig. 5: evaluation time


def fig5_eval_time(records: list[dict[str, Any]], out_dir: str) -> list[Plot]:
    """Fig. 5: wall seconds of each metric's scorer per record (mean bar, min-max whiskers, log axis), over the records
    that timed every metric when there are such records, so each bar measures the same workload."""
    title = "Evaluation time per metric (Fig. 5)"
    timed = [r for r in records if isinstance(r.get("eval_seconds"), dict) and r["eval_seconds"]]
    names = {m for r in timed for m, s in r["eval_seconds"].items() if finite(s) is not None}
    if not names:
        return [Plot("eval_time", title, skipped=f"no record has eval_seconds (measured per metric since this "
                                                 f"genbench): {CONFIGS['fig5']} produces them")]
    metrics = [m for m in SCORE_COLUMNS if m in names] + sorted(names - set(SCORE_COLUMNS))
    full = [r for r in timed if all(finite(r["eval_seconds"].get(m)) is not None for m in metrics)]
    used = full or timed
    per = {m: [max(float(r["eval_seconds"][m]), 1e-6) for r in used if finite(r["eval_seconds"].get(m)) is not None]
           for m in metrics}
    means = [statistics.fmean(per[m]) for m in metrics]
    lows = [v - min(per[m]) for v, m in zip(means, metrics)]
    highs = [max(per[m]) - v for v, m in zip(means, metrics)]
    fig = figure(max(5.5, 1.1 * len(metrics) + 2.0), 3.8)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(metrics)), means, yerr=[lows, highs], capsize=4, color="#4477aa")
    ax.set_yscale("log")
    ax.set_xticks(range(len(metrics)), [f"{SCORE_TITLES.get(m, m)}\n{v:.3g} s" for m, v in zip(metrics, means)],
                  fontsize=8)
    ax.set_ylabel("seconds per record (log)")
    which = "that timed every metric" if full else "(each metric over the records that timed it)"
    ax.set_title(f"{title}\nmean over {len(used)} record(s) {which}; whiskers: min and max", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    flag = any(untrained(r) for r in used)
    name = save(fig, out_dir, "fig5_eval_time.png", flag)
    summary = ", ".join(f"{SCORE_TITLES.get(m, m)} {v:.3g} s" for m, v in zip(metrics, means))
    alt = f"Bar chart on a log axis: mean wall seconds per result record of each metric ({summary})."
    cap = (f"Wall seconds of each metric's scorer per result record, timed where the run scored (mean over "
           f"{len(used)} record(s) {which}, whiskers min to max): {summary}. The test split's embeddings and the class "
           "sums exist before any metric starts; the external embeddings are read by the first metric that needs them.")
    return [Plot("eval_time", title, name, alt, caption_untrained(cap, flag),
                 stats={"seconds": dict(zip(metrics, means)), "n": len(used)})]
