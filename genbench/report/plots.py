"""The paper's summary figures as PNGs (Fig. 2 gain per dataset, Fig. 3 score and cost against shots per concept group,
Fig. 5 evaluation time per metric); sizes, colours and the untrained-model footnote come from
:mod:`genbench.report.figstyle`.

Each function returns :class:`Plot` items: a written file with its alt text and caption, or a skip with the reason and
the config that makes the missing records, so the report says why a figure is missing instead of leaving a hole.
"""

from __future__ import annotations

import logging
import math
import statistics
from typing import Any

from genbench.report.document import Plot
from genbench.report.figstyle import (SMALL, SOURCES, caption_caveat, figure, fit_text, group_colour, group_legend,
                                      panel_grid, save, source_colour, sources_of)
from genbench.report.paper import CONFIGS, GROUPS, backbone, group_of, short_name
from genbench.report.select import Pick, gain, has, pick, pick_clip, shared_shots
from genbench.report.tables import SCORE_COLUMNS, SCORE_TITLES, finite

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------- Fig. 2: gain


def fig2_gain(records: list[dict[str, Any]], out_dir: str) -> list[Plot]:
    """Fig. 2: CLER minus zero-shot per dataset, sorted, one panel per source, with each source's mean; every source
    at one shot count and one CLIP model (:func:`shared_shots`), a source without that count left out and named."""
    title = "Gain of CLER over zero-shot per dataset (Fig. 2)"
    needs = ("cler", "zeroshot")
    clip = pick_clip([r for r in records if has(r, *needs)])
    candidates = [p for p in (pick(records, s, clip=clip, needs=needs) for s in sources_of(records)) if p]
    if not candidates:
        return [Plot("gain", title, skipped=f"no record has both a CLER and a zero-shot score: {CONFIGS['fig2']} "
                                            "produces them")]
    shots, picks = shared_shots(candidates)
    left_out = {p.source: sorted(p.shot_counts()) for p in candidates if p.source not in {q.source for q in picks}}
    n = max(len(p.by_dataset) for p in picks)
    fig = figure(max(6.5, 0.36 * n + 2.0), 2.7 * len(picks) + 0.7)
    means = {}
    first_ax = None
    for i, p in enumerate(picks):
        # one y scale for every source: bar heights compare across panels
        ax = fig.add_subplot(len(picks), 1, i + 1, sharey=first_ax)
        first_ax = first_ax or ax
        items = sorted(((gain(r), d) for d, r in p.by_dataset.items()), key=lambda t: (-t[0], t[1]))
        ys = [g for g, _ in items]
        ax.bar(range(len(items)), ys, color=[group_colour(group_of(p.by_dataset[d])) for _, d in items])
        mean = statistics.fmean(ys)
        means[p.source] = mean
        ax.axhline(0, color="black", linewidth=0.8)
        ax.axhline(mean, color=source_colour(p.source), linestyle="--", linewidth=1.4)
        ax.set_xticks(range(len(items)), [short_name(d) for _, d in items], rotation=60, ha="right", fontsize=SMALL)
        ax.set_xlim(-0.6, max(len(items), 2) - 0.4)
        ax.set_ylabel("CLER - zero-shot\n(points)", fontsize=9)
        ax.set_title(f"{p.label} at {shots} shots: mean {mean:+.2f} points over {len(items)} dataset(s) (dashed line)",
                     fontsize=9.5)
        ax.grid(axis="y", alpha=0.3)
        if i == 0:
            seen = {group_of(r) for q in picks for r in q.by_dataset.values()}
            group_legend(ax, [g for g in GROUPS if g in seen] + sorted(seen - set(GROUPS)), bars=True)
    stated = f"Every source at {shots} shots per class, CLIP {backbone(clip)}"
    if left_out:
        stated += "; left out (no " + f"{shots}-shot records): " + "; ".join(
            f"{s} (has {', '.join(map(str, ks))})" for s, ks in left_out.items())
    fig.suptitle(fit_text(fig, stated, 10.5), fontsize=10, fontweight="bold")
    fig.tight_layout()
    used = [r for p in picks for r in p.by_dataset.values()]
    name = save(fig, out_dir, "fig2_gain.png", used)
    summary = ", ".join(f"{s} {m:+.2f}" for s, m in means.items())
    alt = (f"{len(picks)} bar chart(s), one per source, all at {shots} shots per class: CLER minus zero-shot in points "
           f"per dataset, sorted from the largest gain, bars coloured by concept group; dashed lines at each source's "
           f"mean ({summary}).")
    cap = (f"CLER gain over CLIP zero-shot per dataset, sorted, one panel per source, every source at the same "
           f"{shots} shots per class and CLIP {clip}. Mean gain per source: {summary}.")
    if left_out:
        cap += " Left out rather than compared at another shot count: " + "; ".join(
            f"{s} (has {', '.join(map(str, ks))} shots only)" for s, ks in left_out.items()) + "."
    missing = [s for s in SOURCES if s not in {p.source for p in candidates}]
    if missing:
        cap += f" No {', '.join(missing)} records with CLER and zero-shot ({CONFIGS['fig2']} makes all three sources)."
    return [Plot("gain", title, name, alt, caption_caveat(cap, used),
                 stats={"means": means, "shots": shots, "left_out": left_out})]


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


COST_STYLE = {"linestyle": (0, (4, 2)), "linewidth": 1.0, "alpha": 0.6}  # thin, dashed, faded: the secondary series
SCORE_STYLE = {"linewidth": 2.2, "marker": "o", "markersize": 5}
COST_GREY = "#666666"


def _cost_axes(ax: Any, shown: bool) -> None:
    """The cost strip under a score panel: grey, small, log scale, so the eye reads the score first."""
    ax.set_yscale("log")
    ax.set_facecolor("#f6f6f6")
    ax.tick_params(axis="y", colors=COST_GREY, labelsize=SMALL)
    for side in ("left", "bottom", "right", "top"):
        ax.spines[side].set_color("#bbbbbb")
    ax.set_ylabel("cost, USD\n(log)", color=COST_GREY, fontsize=SMALL)
    ax.grid(alpha=0.25)
    if not shown:
        ax.text(0.5, 0.5, "no cost recorded", transform=ax.transAxes, ha="center", va="center", color=COST_GREY,
                fontsize=SMALL)


def _dollar_labels(ax: Any, ends: list[tuple[int, float]]) -> None:
    """Each cost line's total at its largest shot count, left of the line's end, pushed apart so none overlap."""
    if not ends:
        return
    logs = [math.log10(max(u, 1e-12)) for _, u in ends]
    lo, hi = ax.get_ylim()
    gap = 0.3 * (math.log10(hi) - math.log10(lo))  # a label's height in a strip this short, in decades
    placed: list[float] = []
    for i in sorted(range(len(ends)), key=lambda j: -logs[j]):
        y = logs[i] if not placed else min(logs[i], placed[-1] - gap)
        placed.append(y)
        k, usd = ends[i]
        ax.annotate(dollars(usd), (k, usd), xytext=(k / 1.25, 10 ** y), textcoords="data", fontsize=SMALL,
                    color=COST_GREY, ha="right", va="center",
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "#f6f6f6", "edgecolor": "none", "alpha": 0.85})
    ax.set_ylim(min(lo, 10 ** (min(placed) - gap / 2)), hi)


def fig3_shots(records: list[dict[str, Any]], out_dir: str) -> list[Plot]:
    """Fig. 3: mean CLER against shots per concept group, one curve per source; under each panel a smaller grey strip
    with what those images cost (log USD), so cost reads as secondary to the score it buys."""
    title = "CLER and cost against shots per concept group (Fig. 3)"
    clip = pick_clip([r for r in records if has(r, "cler")])
    picks = [p for p in (pick(records, s, clip=clip) for s in sources_of(records)) if p]
    picks = [p for p in picks if len(p.shot_counts()) >= 2]
    if not picks:
        return [Plot("shots", title, skipped="no series has two or more shot counts: "
                                             f"{CONFIGS['fig3']} sweeps shots 1 to 500")]
    groups = [g for g in (*GROUPS, *sorted({group_of(r) for p in picks for r in p.series_records} - set(GROUPS)))
              if any(group_of(r) == g for p in picks for r in p.series_records)]
    rows, cols = panel_grid(len(groups))
    fig = figure(3.5 * cols + 0.6, 3.5 * rows + 0.6)
    fig.set_layout_engine("constrained")
    outer = fig.add_gridspec(rows, cols)
    ticks = sorted({k for p in picks for k in p.shot_counts()})
    per_image = {}
    for i, g in enumerate(groups):
        inner = outer[divmod(i, cols)].subgridspec(2, 1, height_ratios=[2.7, 1.0], hspace=0.05)
        ax = fig.add_subplot(inner[0])
        cost_ax = fig.add_subplot(inner[1], sharex=ax)
        seen, costed, ends = 0, False, []
        for p in picks:
            score, cost, n = _curve(p, g)
            seen = max(seen, n)
            if score:
                ax.plot(*zip(*score), color=source_colour(p.source), label=f"{p.label}: mean CLER", **SCORE_STYLE)
            if cost:
                costed = True
                cost_ax.plot(*zip(*cost), color=source_colour(p.source), **COST_STYLE)
                ends.append(cost[-1])
            usd_rates = [u for u in (finite((r.get("cost") or {}).get("usd_per_image")) for r in p.series_records)
                         if u is not None]
            if usd_rates:
                per_image[p.source] = statistics.fmean(usd_rates)
        zs = {r["dataset"]: finite(r["scores"].get("zeroshot")) for p in picks for r in p.series_records
              if group_of(r) == g}
        zs = [z for z in zs.values() if z is not None]
        if zs:
            ax.axhline(statistics.fmean(zs), color="grey", linestyle=":", linewidth=1.2, label="CLIP zero-shot")
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.tick_params(axis="x", labelbottom=False)
        ax.set_ylabel(f"mean CLER (%)\nover {seen} dataset(s)", fontsize=9)
        ax.set_title(f"{g}", fontsize=10, fontweight="bold")
        ax.grid(alpha=0.3)
        _cost_axes(cost_ax, costed)
        _dollar_labels(cost_ax, ends)
        cost_ax.minorticks_off()
        cost_ax.set_xlabel("shots per class (log)", fontsize=9)
        if i == 0:
            handles, labels = ax.get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color=COST_GREY, **COST_STYLE))
    labels.append("cost of those images (grey strips, log USD; line colour = source)")
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1 if cols == 1 else 3,
               frameon=False, fontsize=SMALL)
    fig.suptitle(f"Mean CLER against shots per class, CLIP {backbone(clip)}", fontsize=10.5)
    used = [r for p in picks for r in p.series_records]
    name = save(fig, out_dir, "fig3_shots.png", used)
    rates = ", ".join(f"{s} {u:.2e}" for s, u in per_image.items())
    alt = (f"{len(groups)} line chart(s), one per concept group: mean CLER against shots per class on a log axis, one "
           "thick solid line per source; under each, a small grey strip with thin dashed lines for the total USD of "
           "the images on a log axis.")
    cap = (f"Mean CLER over each concept group's datasets against shots per class (thick lines, upper panels); the "
           "grey strips under them: what those images cost (USD per image x images, log scale, thin dashed lines in "
           f"the source's colour), labelled at the largest shot count. USD per image: {rates or 'n/a'}. "
           "Dotted grey: CLIP zero-shot.")
    missing = [s for s in SOURCES if s not in {p.source for p in picks}]
    if missing:
        cap += f" No shot sweep of {', '.join(missing)} ({CONFIGS['fig3']} sweeps all three)."
    return [Plot("shots", title, name, alt, caption_caveat(cap, used))]


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
                  fontsize=SMALL)
    ax.set_ylabel("seconds per record (log)")
    which = "that timed every metric" if full else "(each metric over the records that timed it)"
    ax.set_title(f"{title}\nmean over {len(used)} record(s) {which}; whiskers: min and max", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    name = save(fig, out_dir, "fig5_eval_time.png", used)
    summary = ", ".join(f"{SCORE_TITLES.get(m, m)} {v:.3g} s" for m, v in zip(metrics, means))
    alt = f"Bar chart on a log axis: mean wall seconds per result record of each metric ({summary})."
    cap = (f"Wall seconds of each metric's scorer per result record, timed where the run scored (mean over "
           f"{len(used)} record(s) {which}, whiskers min to max): {summary}. The test split's embeddings and the class "
           "sums exist before any metric starts; the external embeddings are read by the first metric that needs them.")
    return [Plot("eval_time", title, name, alt, caption_caveat(cap, used),
                 stats={"seconds": dict(zip(metrics, means)), "n": len(used)})]
