"""Table 3 as the paper lays it out: CLER of generated data with and without knowledge injection, a row per dataset,
under each generation shot count the columns plain generation, + TI on retrieved images and + TI on original images
(and any other adaptation the records hold, e.g. DataDream-style LoRA), then the mean row; with ``--paper`` the mean
row also carries the paper's means (its Table 3 reports means only)."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from genbench.report.paper import CONFIGS, DATASETS, TABLE2_SCORE
from genbench.report.select import gen_slug, pick_clip, strategy_label
from genbench.report.table2 import Cell, GroupedTable
from genbench.report.tables import finite, rank_marks

# The paper's Table 3 means (CLER %, 17 datasets, SD 2.1): generation shots -> column -> mean.
TABLE3_MEANS = {5: {"plain": 45.92, "ti-retrieved": 46.46, "ti-original": 50.52},
                100: {"plain": 48.64, "ti-retrieved": 47.75, "ti-original": 53.90}}
LABELS = {"plain": "plain", "ti-retrieved": "+TI retrieved", "ti-original": "+TI original",
          "lora-original": "+LoRA original", "lora-retrieved": "+LoRA retrieved"}


def _column(rec: dict[str, Any]) -> str:
    a = rec.get("adaptation")
    return f"{a.get('method')}-{a.get('references')}" if a else "plain"


def table3(records: list[dict[str, Any]], with_paper: bool = False) -> GroupedTable | str:
    """The Table 3 layout of generated records' CLER, or a line saying why it cannot be drawn."""
    gen = [r for r in records if r.get("source") == "generated" and finite(r["scores"].get(TABLE2_SCORE)) is not None]
    adapted = [r for r in gen if r.get("adaptation")]
    if not adapted:
        return f"no record of an adapted generator: {CONFIGS['table3']} produces Table 3's records"
    clip = pick_clip(adapted)
    # One generator and strategy: the ones most adapted records use (Table 3 compares SD with SD + TI).
    generator, strategy = Counter((gen_slug(r.get("generator")), r.get("strategy")) for r in adapted
                                  if r.get("clip") == clip).most_common(1)[0][0]
    chosen = [r for r in gen if r.get("clip") == clip and gen_slug(r.get("generator")) == generator
              and r.get("strategy") == strategy]
    shots = sorted({int(r["shots"]) for r in chosen if r.get("adaptation")})
    columns = [c for c in LABELS if any(_column(r) == c for r in chosen)]
    columns += sorted({_column(r) for r in chosen} - set(columns))
    values: dict[tuple[str, int, str], list[float]] = {}
    for r in chosen:
        if int(r["shots"]) in shots:
            values.setdefault((r["dataset"], int(r["shots"]), _column(r)), []).append(float(r["scores"][TABLE2_SCORE]))
    present = {d for d, _, _ in values}
    datasets = [d for d in DATASETS if d in present] + sorted(present - set(DATASETS))
    rows: list[tuple[str, list[Cell]]] = []
    for d in datasets:
        rows.append((d, [Cell(_mean(values.get((d, k, c), []))) for k in shots for c in columns]))
    mean_cells = []
    for k in shots:
        for c in columns:
            have = [values[(d, k, c)] for d in datasets if (d, k, c) in values]
            mean_cells.append(Cell(_mean([statistics.fmean(v) for v in have]), partial=len(have) < len(datasets),
                                   paper=TABLE3_MEANS.get(k, {}).get(c) if with_paper else None))
    for _, cells in rows:  # best and second best per row and shot count: which injection helps this dataset
        for j in range(0, len(cells), len(columns)):
            for cell, mark in zip(cells[j : j + len(columns)], rank_marks([c.value for c in cells[j : j + len(columns)]])):
                cell.mark = mark
    rows.append(("Mean", mean_cells))
    groups = [(f"{k}-shot generation", [(LABELS.get(c, c), LABELS.get(c, c)) for c in columns]) for k in shots]
    title = (f"CLER (%) of generated data, {generator} {strategy_label(strategy) or strategy}, with and without "
             f"knowledge injection, CLIP {clip}")
    notes = ["A row per dataset; under each shot count, per row, bold marks the best column and underline (italic in "
             "markdown) the second best."]
    if with_paper:
        notes.append("The paper's Table 3 reports means over its 17 datasets only: the Mean row shows them, with ours "
                     "minus the paper's; our mean is over the datasets here.")
    if any(c.partial for c in mean_cells):
        notes.append("* marks a mean over only the datasets that column has.")
    return GroupedTable(title, "dataset", groups, rows, with_paper, notes)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None
