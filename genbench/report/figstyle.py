"""What every report figure shares: an Agg canvas (no display, no pyplot global state) of a size that a browser shows
unshrunk at a 1280 px window, one minimum font size, the source and concept-group colours and markers, and the
caveat footnote a figure drawn from untrained (or toy) models carries on its face.

Sizes: figures are drawn at :data:`DPI` and at most :data:`MAX_WIDTH_IN` wide, so a PNG is at most ~1190 px wide and
the report's HTML (content ~1230 px wide at a 1280 px window) shows it at its own size; every text is at least
:data:`MIN_FONT` points, i.e. at least 12 px on screen.
"""

from __future__ import annotations

import logging
import os
import textwrap
from typing import Any, Iterable

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genbench.models.refs import slugify
from genbench.report.records import untrained

log = logging.getLogger(__name__)

DPI = 110
MAX_WIDTH_IN = 10.8  # 1188 px at DPI
MIN_FONT = 8.0  # points: 12.2 px at DPI
SMALL = 8.5  # point labels, legends, dollar labels
SOURCES = ("generated", "retrieved", "original")
SOURCE_COLOURS = {"generated": "#7b3294", "retrieved": "#1b7837", "original": "#e66101"}
GROUP_COLOURS = {"common": "#4477aa", "fine-grained": "#ee6677", "rare": "#228833"}
# a shape per concept group as well as a colour, so points stay apart in greyscale and for colour-blind readers
GROUP_MARKERS = {"common": "o", "fine-grained": "s", "rare": "^"}
OTHER_MARKERS = ("D", "v", "P", "X", "*")
UNTRAINED_STAMP = ("CAVEAT: inputs from untrained models (tiny or random weights). A plumbing check, not the paper's "
                   "science: do not compare with the paper.")
TOY_STAMP = ("Note: toy models (trained here on a toy dataset): what GenBench measures on a toy world, not the "
             "paper's numbers.")
UNTRAINED_COLOUR = "#b00000"
FOOTNOTE_FONT = 9.0


def slug(name: str) -> str:
    """A figure's file name part."""
    return slugify(name, keep="_.-", sep="-")


def figure(width: float, height: float) -> Figure:
    """A figure ``width`` x ``height`` inches, the width capped at :data:`MAX_WIDTH_IN`."""
    if width > MAX_WIDTH_IN:
        log.debug("report: figure %.1f in wide capped at %.1f in", width, MAX_WIDTH_IN)
    fig = Figure(figsize=(min(width, MAX_WIDTH_IN), height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def fit_text(fig: Figure, text: str, fontsize: float) -> str:
    """``text`` wrapped to lines no wider than ``fig`` (roughly: an average glyph is ~0.56 em wide)."""
    per_line = max(30, int(fig.get_figwidth() * 72 / (fontsize * 0.56)))
    return "\n".join(textwrap.fill(line, per_line) for line in text.split("\n"))


def caveats(records: Iterable[dict[str, Any]]) -> list[str]:
    """The footnotes a figure drawn from ``records`` must carry: untrained models, toy models."""
    records = list(records)
    out = []
    if any(untrained(r) for r in records):
        out.append(UNTRAINED_STAMP)
    if any(r.get("toy_models") for r in records):
        out.append(TOY_STAMP)
    return out


def save(fig: Figure, out_dir: str, name: str, used: Iterable[dict[str, Any]] = ()) -> str:
    """Write ``name`` into ``out_dir``. A figure drawn from records of untrained (or toy) models says so on its face:
    a footnote under everything else (``bbox_inches="tight"`` grows the canvas to keep it)."""
    for i, text in enumerate(caveats(used)):
        fig.canvas.draw()  # lay out first: the footnote goes under the lowest artist (legends hang below some axes)
        lowest = fig.get_tightbbox(fig.canvas.get_renderer()).y0  # inches above the figure's bottom edge
        fig.text(0.5, (min(lowest, 0.0) - 0.08) / fig.get_figheight(), fit_text(fig, text, FOOTNOTE_FONT), ha="center",
                 va="top", fontsize=FOOTNOTE_FONT, color=UNTRAINED_COLOUR if text == UNTRAINED_STAMP else "#333333",
                 fontweight="bold" if text == UNTRAINED_STAMP else "normal", gid=f"caveat-{i}")
    fig.savefig(os.path.join(out_dir, name), dpi=DPI, bbox_inches="tight")
    return name


def caption_caveat(caption: str, used: Iterable[dict[str, Any]]) -> str:
    notes = caveats(used)
    if UNTRAINED_STAMP in notes:
        caption += " Inputs come from untrained models: the numbers prove the plumbing, not the science."
    if TOY_STAMP in notes:
        caption += " Inputs come from toy models: not the paper's numbers."
    return caption


def group_colour(group: str) -> str:
    return GROUP_COLOURS.get(group, "#888888")


def group_marker(group: str, others: list[str] | None = None) -> str:
    if group in GROUP_MARKERS:
        return GROUP_MARKERS[group]
    i = (others or []).index(group) if others and group in others else 0
    return OTHER_MARKERS[i % len(OTHER_MARKERS)]


def source_colour(source: str) -> str:
    return SOURCE_COLOURS.get(source, "#555555")


def sources_of(records: list[dict[str, Any]]) -> list[str]:
    """The paper's three sources first, then any plugin source, by name."""
    present = {r.get("source") for r in records}
    return [s for s in SOURCES if s in present] + sorted(str(s) for s in present - set(SOURCES))


def group_handles(groups: list[str], bars: bool = False) -> list[Any]:
    """Legend entries for concept groups: coloured patches (bar charts) or coloured markers (scatter plots)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    others = [g for g in groups if g not in GROUP_MARKERS]
    if bars:
        return [Patch(color=group_colour(g), label=g) for g in groups]
    return [Line2D([], [], linestyle="none", marker=group_marker(g, others), markersize=7, color=group_colour(g),
                   markeredgecolor="white", label=f"{g} dataset") for g in groups]


def group_legend(where: Any, groups: list[str], below: bool = False, bars: bool = False) -> None:
    """Concept-group colours: inside an axes' upper right, or (``below``, ``where`` a figure) under the panels."""
    handles = group_handles(groups, bars)
    if below:
        where.legend(handles=handles, frameon=False, fontsize=SMALL + 0.5, loc="upper center",
                     bbox_to_anchor=(0.5, 0.0), ncol=len(handles))
    else:
        where.legend(handles=handles, frameon=True, framealpha=0.9, fontsize=SMALL, loc="upper right")


def panel_grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    """(rows, columns) for ``n`` panels: one row up to ``max_cols``, else balanced rows (4 -> 2 x 2)."""
    if n <= max_cols:
        return 1, max(n, 1)
    rows = -(-n // max_cols)
    cols = -(-n // rows)
    return rows, cols
