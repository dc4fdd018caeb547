"""The paper's correlation figures: one point per dataset, Pearson r with a bootstrap CI per panel.

Fig. 4: CLER, CLIP score and FID against linear probe (generated data, one shot count, small datasets left out);
Fig. 6: generated data's CLER gain against the dataset's MTS (from its retrieved collection); Fig. 9: CLER against
linear probe for original and retrieved data; Fig. 11: the same for generated data under each CLIP backbone.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from genbench.report.document import Plot
from genbench.report.paper import (BACKBONE_ORDER, CONFIGS, FIG4_LEFT_OUT, FIG4_SHOTS, FIG9_SHOTS, FIG10_SHOTS, FIG11_SHOTS, GROUPS,
                                   TABLE2_SHOTS, backbone, group_of, short_name)
from genbench.report.figstyle import (SMALL, caption_caveat, figure, fit_text, group_colour, group_legend, group_marker,
                                      panel_grid, save)
from genbench.report.select import Pick, gain, has, mts_by_dataset, pick, pick_clip, shared_shots
from genbench.report.tables import SCORE_TITLES, finite

log = logging.getLogger(__name__)

N_BOOT = 1000
AXIS = {
    "cler": "CLER (%)",
    "clip_score": "CLIP score (100 x cos)",
    "fd_clip": "Fréchet distance, CLIP features",
    "fid": "FID (Inception)",
    "linear_probe": "linear probe (%)",
    "finetune": "fine-tuned CLIP (%)",
}


@dataclass
class Panel:
    title: str
    xlabel: str
    points: list[tuple[float, float, str]]  # (x, y, dataset)


def correlation(xs: list[float], ys: list[float]) -> dict[str, Any] | None:
    """Pearson/Spearman with 95% bootstrap CIs, or None when undefined (n < 3, a constant variable)."""
    if len(xs) < 3:
        return None
    from genbench.errors import UsageError
    from genbench.metrics.correlation import correlate

    try:
        c = correlate(xs, ys, n_boot=N_BOOT, seed=0)
    except UsageError as e:
        log.info("report: no correlation: %s", e)
        return None
    return c if math.isfinite(c["pearson"]) and math.isfinite(c["spearman"]) else None


FEW_POINTS = 10  # below this many points a coefficient swings with a single dataset: the figure says so


def r_lines(c: dict[str, Any] | None, n: int) -> str:
    """What a panel prints under its title: Pearson r and Spearman rho with their 95% bootstrap intervals, and n."""
    if c is None:
        return f"r: n/a (n = {n} datasets;\nneeds 3 or more points, not all equal)"
    (lo, hi), (slo, shi) = c["pearson_ci"], c["spearman_ci"]
    few = " (few: r is fragile)" if c["n"] < FEW_POINTS else ""
    return (f"Pearson r = {c['pearson']:.2f} [{lo:.2f}, {hi:.2f}]\n"
            f"Spearman \u03c1 = {c['spearman']:.2f} [{slo:.2f}, {shi:.2f}]\n"
            f"n = {c['n']} datasets{few}; [ ]: 95% CI")


def r_text(c: dict[str, Any] | None, n: int) -> str:
    if c is None:
        return f"r n/a (n={n}: needs 3 or more points that are not all equal)"
    lo, hi = c["pearson_ci"]
    return f"r = {c['pearson']:.2f} [{lo:.2f}, {hi:.2f}], n={c['n']}"


def corr_ci_text(c: dict[str, Any] | None) -> str:
    if c is None:
        return "Pearson n/a, Spearman n/a (needs 3 or more points that are not all equal)"
    (plo, phi), (slo, shi) = c["pearson_ci"], c["spearman_ci"]
    return (f"Pearson {c['pearson']:.2f} [{plo:.2f}, {phi:.2f}], Spearman {c['spearman']:.2f} [{slo:.2f}, {shi:.2f}] "
            f"(95% bootstrap CI, n={c['n']})")


def _draw(panels: list[Panel], ylabel: str, out_dir: str, name: str, suptitle: str, used: list[dict[str, Any]],
          zero_line: bool = False) -> tuple[str, dict[str, Any]]:
    """One scatter per panel (at most three a row, so the PNG is shown unshrunk): points shaped and coloured by
    concept group and labelled with the dataset, the least-squares line, and r, its interval and n under the title."""
    rows, cols = panel_grid(len(panels))
    fig = figure(3.55 * cols + 0.4 if cols > 1 else 5.0, 3.9 * rows + 0.6)  # one panel: room for its title
    stats = {}
    groups_seen: set[str] = set()
    others = sorted({group_of(d) for p in panels for _, _, d in p.points} - set(GROUPS))
    for i, p in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        xs, ys = [x for x, _, _ in p.points], [y for _, y, _ in p.points]
        groups = [group_of(d) for _, _, d in p.points]
        groups_seen |= set(groups)
        for g in sorted(set(groups)):
            gx = [x for x, gg in zip(xs, groups) if gg == g]
            gy = [y for y, gg in zip(ys, groups) if gg == g]
            ax.scatter(gx, gy, c=group_colour(g), marker=group_marker(g, others), s=36, alpha=0.9,
                       edgecolors="white", linewidths=0.6, zorder=3)
        for x, y, d in p.points:
            ax.annotate(short_name(d), (x, y), xytext=(3, 2), textcoords="offset points", fontsize=SMALL - 0.5,
                        color="#333")
        c = correlation(xs, ys)
        stats[p.title] = {"n": len(xs), "correlation": c}
        if c is not None:  # least-squares line: the trend the coefficient summarises
            slope, icept = np.polyfit(xs, ys, 1)
            lo, hi = min(xs), max(xs)
            ax.plot([lo, hi], [slope * lo + icept, slope * hi + icept], color="#444", linewidth=0.9, alpha=0.6)
        if zero_line:
            ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(f"{p.title}\n{r_lines(c, len(xs))}", fontsize=SMALL + 0.5, loc="left")
        ax.set_xlabel(p.xlabel, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=SMALL)
        ax.grid(alpha=0.3)
    fig.suptitle(fit_text(fig, suptitle, 10.5), fontsize=10.5)
    fig.tight_layout(h_pad=1.5)
    group_legend(fig, [g for g in (*GROUPS, *others) if g in groups_seen], below=True)
    return save(fig, out_dir, name, used), stats


def _points(p: Pick, x: str, y: str, leave_out: tuple[str, ...] = ()) -> list[tuple[float, float, str]]:
    out = []
    for d, r in sorted(p.by_dataset.items()):
        xv, yv = finite(r["scores"].get(x)), finite(r["scores"].get(y))
        if d not in leave_out and xv is not None and yv is not None:
            out.append((xv, yv, d))
    return out


def _captions(stats: dict[str, Any]) -> str:
    return "; ".join(f"{title}: {corr_ci_text(s['correlation'])}" for title, s in stats.items())


def fig4_quality(records: list[dict[str, Any]], out_dir: str) -> list[Plot]:
    """Fig. 4: CLER, CLIP score and FID (x) against linear probe (y) for generated data at one shot count."""
    title = "Data-quality measures against linear probe (Fig. 4)"
    p = pick(records, "generated", prefer_shots=(FIG4_SHOTS,), needs=("linear_probe",))
    if p is None:
        return [Plot("quality", title, skipped="no generated record with a linear-probe score: "
                                               f"{CONFIGS['fig4']} produces them")]
    fid = "fid" if any(finite(r["scores"].get("fid")) is not None for r in p.by_dataset.values()) else "fd_clip"
    panels, missing = [], []
    for m in ("cler", "clip_score", fid):
        pts = _points(p, m, "linear_probe", FIG4_LEFT_OUT)
        if pts:
            panels.append(Panel(f"{SCORE_TITLES[m]} vs linear probe", AXIS[m], pts))
        else:
            missing.append(m)
    if not panels:
        return [Plot("quality", title, skipped=f"the generated records with a linear probe have none of CLER, CLIP "
                                               f"score, FID: {CONFIGS['fig4']} scores all of them")]
    left = sorted(set(FIG4_LEFT_OUT) & set(p.by_dataset))
    used = list(p.by_dataset.values())
    name, stats = _draw(panels, AXIS["linear_probe"], out_dir, "fig4_quality.png",
                        f"{p.label}, {p.shots} shots per class, CLIP {backbone(p.clip)}", used)
    drawn = ", ".join(SCORE_TITLES[m] for m in ("cler", "clip_score", fid) if m not in missing)
    alt = (f"{len(panels)} scatter plot(s): {drawn} (x) against linear-probe score (y), one point per dataset, "
           "coloured by concept group.")
    cap = (f"{_captions(stats)}. Left out as in the paper, the four datasets Table 4 lists with 2 classes: "
           f"{', '.join(map(short_name, FIG4_LEFT_OUT))}{f' ({len(left)} present here)' if left else ''}.")
    if missing:
        cap += f" Not drawn: {', '.join(missing)} (no scores; {CONFIGS['fig4']} computes them)."
    return [Plot("quality", title, name, alt, caption_caveat(cap, used), stats=stats)]


def fig6_mts(records: list[dict[str, Any]], out_dir: str) -> list[Plot]:
    """Fig. 6: generated data's CLER gain over zero-shot (y) against each dataset's MTS from its retrieval (x)."""
    title = "Generated data's CLER gain against mean text similarity (Fig. 6)"
    p = pick(records, "generated", prefer_shots=(TABLE2_SHOTS,), needs=("cler", "zeroshot"))
    mts = mts_by_dataset(records, p.clip if p is not None else None)
    if p is None:
        return [Plot("mts", title, skipped="no generated record with CLER and zero-shot scores: "
                                           f"{CONFIGS['fig6']} produces them")]
    if not mts:
        return [Plot("mts", title, skipped="no retrieved record carries an MTS (it comes from each dataset's "
                                           f"retrieval): {CONFIGS['fig6']} retrieves for every dataset")]
    pts = [(mts[d], gain(r), d) for d, r in sorted(p.by_dataset.items()) if d in mts]
    if not pts:
        return [Plot("mts", title, skipped="no dataset has both a generated record and a retrieved MTS: "
                                           f"{CONFIGS['fig6']} makes both")]
    used = list(p.by_dataset.values()) + [r for r in records if r.get("source") == "retrieved" and r["dataset"] in mts]
    name, stats = _draw([Panel("CLER gain vs MTS", "mean text similarity (MTS) of the dataset's retrieval", pts)],
                        "CLER - zero-shot (points)", out_dir, "fig6_mts.png",
                        f"{p.label}, {p.shots} shots per class, CLIP {backbone(p.clip)}", used, zero_line=True)
    alt = (f"Scatter plot: generated data's CLER gain over zero-shot (y) against the dataset's MTS (x), "
           f"{len(pts)} dataset(s), coloured by concept group.")
    no_mts = sorted(set(p.by_dataset) - set(mts))
    cap = f"CLER gain vs MTS: {corr_ci_text(stats['CLER gain vs MTS']['correlation'])}."
    if no_mts:
        cap += f" No MTS for: {', '.join(map(short_name, no_mts))} ({CONFIGS['fig6']} retrieves for them)."
    return [Plot("mts", title, name, alt, caption_caveat(cap, used), stats=stats["CLER gain vs MTS"])]


def _left_out_text(left_out: dict[str, list[int]], shots: int) -> str:
    return "; ".join(f"{what} (has {', '.join(map(str, ks))} shots, not {shots})" for what, ks in left_out.items())


def _cler_against(records: list[dict[str, Any]], out_dir: str, kind: str, title: str, sources: tuple[str, ...],
                  shots: int, score: str, what: str, file: str) -> list[Plot]:
    """CLER (x) against ``score`` (y), one panel per source of ``sources``, all at one shot count (``shots`` when
    every source has it) and one CLIP model (Figs. 9 and 10)."""
    needs = ("cler", score)
    clip = pick_clip([r for r in records if r.get("source") in sources and has(r, *needs)])
    candidates = [p for p in (pick(records, s, clip=clip, needs=needs) for s in sources) if p]
    k, picks = shared_shots(candidates, prefer=(shots,))
    panels = [Panel(f"{p.label}, {p.shots} shots", AXIS["cler"], _points(p, "cler", score)) for p in picks]
    panels = [pn for pn in panels if pn.points]
    if not panels:
        return [Plot(kind, title, skipped=f"no {' or '.join(sources)} record with CLER and {what} scores: "
                                          f"{CONFIGS[kind]} produces them")]
    left_out = {p.source: sorted(p.shot_counts()) for p in candidates if p.source not in {q.source for q in picks}}
    used = [r for p in picks for r in p.by_dataset.values()]
    stated = f"Every panel at {k} shots per class, CLIP {backbone(clip)}"
    name, stats = _draw(panels, AXIS[score], out_dir, file,
                        stated + (f"\nleft out: {_left_out_text(left_out, k)}" if left_out else ""), used)
    alt = (f"{len(panels)} scatter plot(s): CLER (x) against {what} (y), one point per dataset, for "
           f"{', '.join(p.title for p in panels)}.")
    cap = _captions(stats) + "."
    if left_out:
        cap += f" Left out rather than compared at another shot count: {_left_out_text(left_out, k)}."
    missing = [s for s in sources if s not in {p.source for p in candidates}]
    if missing:
        cap += f" No {' or '.join(missing)} records with {what} scores ({CONFIGS[kind]} makes both)."
    return [Plot(kind, title, name, alt, caption_caveat(cap, used), stats=stats)]


def fig9_real(records: list[dict[str, Any]], out_dir: str) -> list[Plot]:
    """Fig. 9: CLER (x) against linear probe (y) for 5-shot original and retrieved data."""
    return _cler_against(records, out_dir, "fig9", "CLER against linear probe for original and retrieved data (Fig. 9)",
                         ("original", "retrieved"), FIG9_SHOTS, "linear_probe", "linear-probe", "fig9_real.png")


def fig10_finetune(records: list[dict[str, Any]], out_dir: str) -> list[Plot]:
    """Fig. 10: CLER (x) against the accuracy of CLIP fine-tuned on the data (y), 5-shot generated and original."""
    return _cler_against(records, out_dir, "fig10",
                         "CLER against fine-tuned CLIP for generated and original data (Fig. 10)",
                         ("generated", "original"), FIG10_SHOTS, "finetune", "fine-tuned CLIP", "fig10_finetune.png")


def _backbone_order(clip: str) -> tuple:
    arch = backbone(clip)
    return (BACKBONE_ORDER.index(arch) if arch in BACKBONE_ORDER else len(BACKBONE_ORDER), clip)


def fig11_backbones(records: list[dict[str, Any]], out_dir: str) -> list[Plot]:
    """Fig. 11: CLER (x) against linear probe (y) for 5-shot generated data, one panel per CLIP backbone."""
    title = "CLER against linear probe per CLIP backbone (Fig. 11)"
    clips = sorted({str(r.get("clip")) for r in records if r.get("source") == "generated"
                    and finite(r["scores"].get("linear_probe")) is not None}, key=_backbone_order)
    if len(clips) < 2:
        return [Plot("fig11", title, skipped=f"generated records with a linear probe from {len(clips)} CLIP backbone(s); "
                                             f"needs 2 or more: {CONFIGS['fig11']} score them with RN50, ViT-B/32, "
                                             "ViT-B/16 and ViT-L/14")]
    candidates = [p for p in (pick(records, "generated", clip=c, needs=("cler", "linear_probe")) for c in clips) if p]
    k, picks = shared_shots(candidates, prefer=(FIG11_SHOTS,))
    panels = [Panel(f"{backbone(p.clip)} ({p.label}, {p.shots} shots)", AXIS["cler"],
                    _points(p, "cler", "linear_probe")) for p in picks]
    left_out = {backbone(p.clip): sorted(p.shot_counts()) for p in candidates if p.clip not in {q.clip for q in picks}}
    used = [r for p in picks for r in p.by_dataset.values()]
    stated = f"Generated data under each CLIP backbone, every panel at {k} shots per class"
    name, stats = _draw(panels, AXIS["linear_probe"], out_dir, "fig11_backbones.png",
                        stated + (f"\nleft out: {_left_out_text(left_out, k)}" if left_out else ""), used)
    alt = (f"{len(panels)} scatter plots, one per CLIP backbone ({', '.join(backbone(p.clip) for p in picks)}): "
           "CLER (x) against linear probe (y), one point per dataset.")
    cap = _captions(stats) + "."
    if left_out:
        cap += f" Left out rather than compared at another shot count: {_left_out_text(left_out, k)}."
    return [Plot("fig11", title, name, alt, caption_caveat(cap, used), stats=stats)]
