"""Table 2-style tables: one per dataset, a row per source/strategy/shots, a column per score, with the best and second
best value of each column marked."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from genbench.metrics.registry import METRICS

# The metrics, then CLIP fine-tuned on the collection (a run's finetune: block, genbench.engine.finetune).
SCORE_COLUMNS = tuple(m.name for m in METRICS) + ("finetune",)
SCORE_TITLES = {**{m.name: m.title for m in METRICS}, "finetune": "fine-tuned CLIP"}
# Distances: smaller means the external data is closer to the real test images.
LOWER_IS_BETTER = frozenset(m.name for m in METRICS if m.lower_is_better)

BEST, SECOND = "best", "second"


def finite(v: Any) -> float | None:
    """``v`` as a float when it is a finite number, else None (missing scores and NaN are not ranked or plotted)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def rank_marks(values: Sequence[float | None], lower_is_better: bool = False) -> list[str | None]:
    """BEST for every value equal to the best, SECOND for every value equal to the next distinct one, else None.

    A column with fewer than two distinct values gets no marks: when every row ties (zero-shot does not depend on the
    external data) marking them all would say nothing.
    """
    vals = [finite(v) for v in values]
    distinct = sorted({v for v in vals if v is not None}, reverse=not lower_is_better)
    if len(distinct) < 2:
        return [None] * len(vals)
    first, second = distinct[0], distinct[1]
    return [BEST if v == first else SECOND if v == second else None for v in vals]


def series_key(rec: dict[str, Any]) -> tuple:
    """One line in a plot / one group of rows: a collection scored with one CLIP model."""
    return (rec["source"], rec.get("generator"), rec.get("strategy"), rec.get("variant"), rec.get("clip"))


def series_labels(records: list[dict[str, Any]]) -> dict[tuple, str]:
    """Short labels ("generated tiny/st", "original"); the variant and then the CLIP model are added only where needed
    to tell two series apart."""
    keys = list(dict.fromkeys(series_key(r) for r in records))

    from genbench.models.refs import generator_slug

    def base(k: tuple) -> str:
        # a hub id is long; its short name (sd21-base) is what the variant directories use too
        detail = "/".join(str(p) for p in (generator_slug(k[1]) if k[1] else None, k[2]) if p)
        return f"{k[0]} {detail}".strip()

    labels = {k: base(k) for k in keys}
    for extra in (3, 4):  # variant, then clip
        counts: dict[str, int] = {}
        for lab in labels.values():
            counts[lab] = counts.get(lab, 0) + 1
        labels = {k: (f"{lab} [{k[extra]}]" if counts[lab] > 1 and k[extra] else lab) for k, lab in labels.items()}
    return labels


@dataclass
class Table:
    """Cells are display strings; ``marks[i][j]`` is BEST, SECOND or None for row i, score column j."""

    title: str
    header: list[str]
    rows: list[list[str]]
    marks: list[list[str | None]]
    first_score_col: int


def fmt(v: Any) -> str:
    v = finite(v) if not isinstance(v, str) else v
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.2e}"


def column_format(values: Sequence[Any]) -> str:
    """One format spec for a whole column of numbers, so every cell of it reads alike: fixed point with the same
    decimals (2 when every non-zero magnitude is at least 0.1, 3 from 0.01, 4 from 0.001), else (a magnitude below
    0.001 or from a million up) scientific notation for every cell."""
    mags = [abs(v) for v in (finite(x) for x in values) if v is not None and v != 0]
    if not mags:
        return ".2f"
    if min(mags) < 1e-3 or max(mags) >= 1e6:
        return ".2e"
    return ".2f" if min(mags) >= 0.1 else ".3f" if min(mags) >= 0.01 else ".4f"


def fmt_column(values: Sequence[Any], spec: str | None = None) -> list[str]:
    """``values`` as display strings in one format (:func:`column_format` unless ``spec``); '-' where missing."""
    spec = spec or column_format(values)
    return ["-" if (v := finite(x)) is None else format(v + 0.0, spec) for x in values]


def fmt_usd(v: Any) -> str:
    """Dollars per image span 1e-10 (copying a file) to 1e-2 (labelling it): always in the same notation."""
    v = finite(v)
    return "-" if v is None else f"{v:.2e}"


def table_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The run summary's columns (a score column only where some record has it) and one row per record."""
    cols = [c for c in SCORE_COLUMNS if any(c in r.get("scores", {}) for r in records)]
    header = ["dataset", "source", "generator", "strategy", "shots", "n_train", "metric", *cols, "USD/image"]
    per_col = [fmt_column([r["scores"].get(c) for r in records]) for c in cols]
    rows = [
        [r["dataset"], r["source"], r.get("generator") or "-", r.get("strategy") or "-", str(r["shots"]),
         str(r["n_train"]), r["metric"], *[col[i] for col in per_col],
         fmt_usd((r.get("cost") or {}).get("usd_per_image"))]
        for i, r in enumerate(records)
    ]
    return header, rows


def dataset_table(title: str, records: list[dict[str, Any]]) -> Table:
    """The Table 2-style table of one dataset's records, rows sorted by source, generator, strategy, shots."""
    labels = series_labels(records)
    recs = sorted(records, key=lambda r: (labels[series_key(r)], int(r["shots"])))
    cols = [c for c in SCORE_COLUMNS if any(finite(r["scores"].get(c)) is not None for r in recs)]
    header = ["source / strategy", "shots", "n_train", *[SCORE_TITLES[c] for c in cols], "USD/image"]
    per_col = [fmt_column([r["scores"].get(c) for r in recs]) for c in cols]
    rows = [
        [labels[series_key(r)], str(r["shots"]), str(r.get("n_train", "-")), *[col[i] for col in per_col],
         fmt_usd((r.get("cost") or {}).get("usd_per_image"))]
        for i, r in enumerate(recs)
    ]
    per_col = [rank_marks([r["scores"].get(c) for r in recs], c in LOWER_IS_BETTER) for c in cols]
    marks = [[per_col[j][i] for j in range(len(cols))] for i in range(len(recs))]
    return Table(title, header, rows, marks, first_score_col=3)


def mark_markdown(cell: str, mark: str | None) -> str:
    return f"**{cell}**" if mark == BEST else f"_{cell}_" if mark == SECOND else cell


def table_markdown(t: Table) -> str:
    out = ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    for row, marks in zip(t.rows, t.marks):
        cells = list(row)
        for j, m in enumerate(marks):
            cells[t.first_score_col + j] = mark_markdown(cells[t.first_score_col + j], m)
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)
