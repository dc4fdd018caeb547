"""The generator sweep: which generator makes the most useful training data, per dataset and per concept group, and
at what price. Generators are ranked by CLER gain over CLIP zero-shot on the same test split, and by USD per point of
that gain (the collection's measured USD per image times the images a shot count uses, over the gain); a generator
that gains nothing has no price per point. Drawn when the records hold at least two generators under one strategy."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from genbench.report.document import Block, Bullets, Heading, Para
from genbench.report.select import gain, gen_slug, pick_clip, strategy_label
from genbench.report.table2 import Cell, GroupedTable
from genbench.report.tables import finite, rank_marks

SCORE = "cler"


def _group(dataset: str) -> str:
    from genbench.catalog import get_dataset
    from genbench.errors import UsageError

    try:
        return get_dataset(dataset).group
    except UsageError:  # a dataset from another catalog: still ranked, under its own group
        return "other"


def _usd(rec: dict[str, Any]) -> float | None:
    """What the images of this record's shot count cost: USD per image times images (None where unpriced)."""
    per_image = finite((rec.get("cost") or {}).get("usd_per_image"))
    n = rec.get("n_train")
    return per_image * n if per_image is not None and isinstance(n, int) and n > 0 else None


def _chosen(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None, str | None]:
    gen = [r for r in records if r.get("source") == "generated" and gain(r, SCORE) is not None]
    clip = pick_clip(gen)
    gen = [r for r in gen if r.get("clip") == clip]
    # The strategy most generators share (the sweep config uses DT for every family).
    per_strategy = Counter(s for s, _ in {(r.get("strategy"), gen_slug(r.get("generator"))) for r in gen})
    if not per_strategy:
        return [], clip, None
    strategy = per_strategy.most_common(1)[0][0]
    return [r for r in gen if r.get("strategy") == strategy], clip, strategy


def _table(title: str, rows_in: dict[tuple[str, int, str], list[float]], datasets: list[str], shots: list[int],
           generators: list[str], lower_is_better: bool, notes: list[str], number_format: str = ".2f") -> GroupedTable:
    def mean(values: list[float]) -> float | None:
        return statistics.fmean(values) if values else None

    rows: list[tuple[str, list[Cell]]] = []
    groups = sorted({_group(d) for d in datasets})
    labels = [(d, d) for d in datasets] + [(f"mean: {g}", g) for g in groups] + [("mean: all", None)]
    for label, key in labels:
        cells = []
        for k in shots:
            for g in generators:
                if key is None or label.startswith("mean: "):
                    members = [d for d in datasets if key is None or _group(d) == key]
                    have = [mean(rows_in[(d, k, g)]) for d in members if rows_in.get((d, k, g))]
                    cells.append(Cell(mean(have), partial=0 < len(have) < len(members)))
                else:
                    cells.append(Cell(mean(rows_in.get((key, k, g), []))))
        for j in range(0, len(cells), len(generators)):  # best and second best generator per row and shot count
            part = cells[j : j + len(generators)]
            for cell, mark in zip(part, rank_marks([c.value for c in part], lower_is_better=lower_is_better)):
                cell.mark = mark
        rows.append((label, cells))
    column_groups = [(f"{k} shots", [(g, g) for g in generators]) for k in shots]
    return GroupedTable(title, "dataset", column_groups, rows, False, notes, number_format)


def sweep_blocks(records: list[dict[str, Any]]) -> list[Block]:
    """The sweep's tables and rankings, or nothing when the records hold fewer than two generators."""
    chosen, clip, strategy = _chosen(records)
    generators = sorted({gen_slug(r.get("generator")) for r in chosen})
    if len(generators) < 2:
        return []
    gains: dict[tuple[str, int, str], list[float]] = {}
    prices: dict[tuple[str, int, str], list[float]] = {}
    for r in chosen:
        key = (r["dataset"], int(r["shots"]), gen_slug(r.get("generator")))
        g = gain(r, SCORE)
        gains.setdefault(key, []).append(g)
        usd = _usd(r)
        if usd is not None and g is not None and g > 0:
            prices.setdefault(key, []).append(usd / g)
    datasets = sorted({d for d, _, _ in gains}, key=lambda d: (_group(d), d))
    shots = sorted({k for _, k, _ in gains})
    setting = f"{strategy_label(strategy) or strategy}, CLIP {clip}"
    marks = ("Per row and shot count, bold marks the best generator and underline (italic in markdown) the second "
             "best; * marks a group mean over only the datasets that generator has.")
    blocks: list[Block] = [
        Heading(2, "Generator sweep: which generator's data helps most"),
        Para(f"CLER gain over CLIP zero-shot (points) of each generator's data, {setting}. Newer or prettier "
             "generators need not make more useful training data: the ranking is per dataset and per concept group."),
        _table(f"CLER gain over zero-shot (points), {setting}", gains, datasets, shots, generators, False, [marks]),
        _table(f"USD per point of CLER gain, {setting}", prices, datasets, shots, generators, True,
               [marks + " Lower is better; '-' where the data gained nothing or was not priced.",
                "USD: the collection's measured USD per image times the images the shot count uses."], ".2e"),
    ]
    ranking = []
    for k in shots:
        for grp in sorted({_group(d) for d in datasets}):
            means = {g: statistics.fmean(v) for g in generators
                     if (v := [statistics.fmean(gains[(d, k, g)]) for d in datasets
                               if _group(d) == grp and (d, k, g) in gains])}
            order = sorted(means.items(), key=lambda kv: -kv[1])
            ranking.append(f"{k} shots, {grp}: " + " > ".join(f"{g} ({v:+.2f})" for g, v in order))
    blocks += [Para("Ranking by mean CLER gain per concept group:"), Bullets(ranking)]
    return blocks
