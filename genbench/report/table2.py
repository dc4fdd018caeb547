"""Table 2 as the paper lays it out: a row per generator x strategy, the datasets as columns under their concept
group (in the paper's order within each group), each group's mean and the overall mean, best and second best marked
per column; optionally each cell also carries the paper's value and our difference from it."""

from __future__ import annotations

import html
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from genbench.report.paper import (CONFIGS, DATASETS, GROUPS, PAPER_CLIP, STRATEGY_LABELS, TABLE2, TABLE2_SCORE,
                                   TABLE2_SHOTS, backbone, group_of, paper_mean, paper_row, paper_value, short_name)
from genbench.report.select import gen_slug, pick_clip, strategy_label
from genbench.report.tables import BEST, SECOND, finite, rank_marks

PARTIAL = "*"  # a mean over only some of the table's datasets in that group
MEAN = "mean"


@dataclass
class Cell:
    value: float | None
    mark: str | None = None
    paper: float | None = None
    partial: bool = False

    @property
    def text(self) -> str:
        return self.shown(".2f")

    def shown(self, spec: str) -> str:
        """The value in ``spec`` (one spec per table: every cell reads alike), '-' when missing."""
        return "-" if self.value is None else format(self.value + 0.0, spec) + (PARTIAL if self.partial else "")

    @property
    def diff(self) -> float | None:
        # rounded as displayed, and + 0.0 so a difference that rounds to zero never prints as -0.00
        return None if self.value is None or self.paper is None else round(self.value - self.paper, 2) + 0.0


@dataclass
class GroupedTable:
    """``groups``: (group name, [(column label, full name)]); ``rows``: (row label, one Cell per column)."""

    title: str
    corner: str
    groups: list[tuple[str, list[tuple[str, str]]]]
    rows: list[tuple[str, list[Cell]]]
    with_paper: bool = False
    notes: list[str] = field(default_factory=list)
    number_format: str = ".2f"  # every cell's value; ".2e" for dollars


def _display(dataset: str) -> str:
    from genbench.catalog import get_dataset
    from genbench.errors import UsageError

    try:
        return get_dataset(dataset).display_name
    except UsageError:
        return dataset


def _columns(datasets: set[str]) -> list[tuple[str, list[str]]]:
    """Datasets by group: the paper's groups first, in the paper's column order within each; others after, by name."""
    groups = [g for g in GROUPS if any(group_of(d) == g for d in datasets)]
    groups += sorted({group_of(d) for d in datasets} - set(GROUPS))
    out = []
    for g in groups:
        members = [d for d in DATASETS if d in datasets and group_of(d) == g]
        members += sorted(d for d in datasets if d not in DATASETS and group_of(d) == g)
        out.append((g, members))
    return out


def _setting(rec: dict[str, Any]) -> str:
    """What sets a record's collection apart from its generator and strategy at their defaults (``steps10``,
    ``emph-literal``, ``ipa-...``): the collection's name without that base, its seed (seeds are averaged) and the
    retrieved collection RA draws from (one per dataset)."""
    from genbench.models.refs import generator_slug

    variant, strategy = str(rec.get("variant") or ""), str(rec.get("strategy") or "")
    try:
        slug = generator_slug(str(rec.get("generator")))
    except Exception:  # a generator reference this genbench cannot name: keep the whole variant
        slug = None
    rest = variant
    for base in ([f"{slug}_{strategy.replace('+', '-')}_", f"{slug}_{strategy}_"] if slug else []):
        if variant.startswith(base):
            rest = variant[len(base):]
            break
    tokens = [t for t in rest.split("_") if t and not re.fullmatch(r"s\d+|from-[0-9a-f]{8}", t)]
    return "_".join(tokens)


def _row_key(rec: dict[str, Any]) -> tuple[str, str, str]:
    return (gen_slug(rec.get("generator")) or "?", str(rec.get("strategy") or "-"), _setting(rec))


def _row_sort(key: tuple[str, str, str]) -> tuple:
    order = list(STRATEGY_LABELS)
    return (key[0], order.index(key[1]) if key[1] in order else len(order), key[1], key[2])


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def table2(records: list[dict[str, Any]], with_paper: bool = False) -> GroupedTable | str:
    """The Table 2 layout of the generated records' CLER, or a line saying why it cannot be drawn."""
    gen = [r for r in records if r.get("source") == "generated" and finite(r["scores"].get(TABLE2_SCORE)) is not None]
    if not gen:
        return f"no generated record with a CLER score: {CONFIGS['table2']} produces Table 2's records"
    clip = pick_clip(gen)
    gen = [r for r in gen if r.get("clip") == clip]
    shot_counts = Counter(int(r["shots"]) for r in gen)
    shots = TABLE2_SHOTS if TABLE2_SHOTS in shot_counts else max(shot_counts, key=lambda s: (shot_counts[s], s))
    gen = [r for r in gen if int(r["shots"]) == shots]

    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in gen:
        values.setdefault(_row_key(r), {}).setdefault(r["dataset"], []).append(float(r["scores"][TABLE2_SCORE]))
    columns = _columns({r["dataset"] for r in gen})
    several_groups = len(columns) > 1
    keys = sorted(values, key=_row_sort)
    rows: list[tuple[str, list[Cell]]] = []
    averaged = 0
    for key in keys:
        per = {d: statistics.fmean(v) for d, v in values[key].items()}
        averaged += sum(len(v) > 1 for v in values[key].values())
        # The paper's row is the one at the paper's settings: a variant (other steps, an IP-Adapter) gets none.
        pkey = paper_row(key[0], key[1]) if with_paper and not key[2] else None
        cells: list[Cell] = []
        for _, members in columns:
            for d in members:
                cells.append(Cell(per.get(d), paper=paper_value(pkey, d) if pkey and d in per else None))
            if several_groups:
                have = [d for d in members if d in per]
                cells.append(Cell(_mean([per[d] for d in have]), partial=0 < len(have) < len(members),
                                  paper=paper_mean(pkey, have) if pkey and have else None))
        every = [d for _, members in columns for d in members]
        have = [d for d in every if d in per]
        cells.append(Cell(_mean([per[d] for d in have]), partial=len(have) < len(every),
                          paper=paper_mean(pkey, have) if pkey and have else None))
        label = f"{key[0]} {strategy_label(key[1]) or key[1]}"
        rows.append((f"{label} ({key[2]})" if key[2] else label, cells))
    for j in range(len(rows[0][1])):
        marks = rank_marks([cells[j].value for _, cells in rows])
        for (_, cells), m in zip(rows, marks):
            cells[j].mark = m

    groups = []
    for g, members in columns:
        cols = [(short_name(d), _display(d)) for d in members]
        if several_groups:
            cols.append((MEAN, f"mean over the {g} datasets"))
        groups.append((g, cols))
    groups.append(("all", [(MEAN.capitalize(), "mean over every dataset column")]))

    title = (f"CLER (%) of {shots}-shot generated data, CLIP {clip}: a row per generator and strategy, "
             f"the datasets under their concept group")
    notes = _notes(keys, columns, shots, clip, with_paper, averaged, any(c.partial for _, cs in rows for c in cs))
    return GroupedTable(title, "generator / strategy", groups, rows, with_paper, notes)


def _notes(keys: list[tuple[str, str]], columns: list[tuple[str, list[str]]], shots: int, clip: str | None,
           with_paper: bool, averaged: int, any_partial: bool) -> list[str]:
    notes = []
    present = {d for _, members in columns for d in members}
    missing = [short_name(d) for d in DATASETS if d not in present]
    if missing:
        notes.append(f"{len(missing)} of the paper's 22 datasets have no {shots}-shot generated record here: "
                     f"{', '.join(missing)} ({CONFIGS['table2']} runs all 22).")
    if any_partial:
        notes.append(f"{PARTIAL} marks a mean over only the datasets that row has.")
    if averaged:
        notes.append(f"{averaged} cell(s) average several collections of the same generator and strategy "
                     "(other seeds or variants).")
    if with_paper:
        matched = {paper_row(k[0], k[1]) for k in keys if not k[2]} - {None}
        unmatched = [f"{g} {STRATEGY_LABELS.get(s, s)}" for g, s in TABLE2 if (g, s) not in matched]
        notes.append("Each cell: ours, then the paper's Table 2 value and ours minus the paper's (below ours in HTML, "
                     "in parentheses in markdown); for a mean, the paper's mean over the same datasets.")
        if unmatched:
            notes.append(f"Paper rows with no records here: {', '.join(unmatched)}.")
        if not matched:
            notes.append("No row here matches a row of the paper's Table 2 (SD 2.1 or GLIDE with ST, CE, DT, DT+NP or "
                         "DT+NP+RD): nothing to compare.")
        if shots != TABLE2_SHOTS:
            notes.append(f"Caution: the paper's Table 2 is {TABLE2_SHOTS}-shot; these rows are {shots}-shot.")
        if backbone(clip) != PAPER_CLIP:
            notes.append(f"Caution: the paper scores with CLIP {PAPER_CLIP}; these rows use {clip}.")
    return notes


# ------------------------------------------------------------------------------------------------------------ rendering


def _md_cell(c: Cell, with_paper: bool, spec: str = ".2f") -> str:
    text = c.shown(spec)
    text = f"**{text}**" if c.mark == BEST else f"_{text}_" if c.mark == SECOND else text
    if with_paper and c.paper is not None:
        text += f" ({c.paper:.2f}, {c.diff:+.2f})"
    return text


def grouped_markdown(t: GroupedTable) -> str:
    """Markdown has one header row: it names each group over its first column; the first body row names the
    datasets."""
    cols = [c for _, group in t.groups for c in group]
    group_row = [t.corner]
    for g, group in t.groups:
        group_row += [g] + [""] * (len(group) - 1)
    out = [f"**{t.title}**", "", "| " + " | ".join(group_row) + " |", "|" + "---|" * (len(cols) + 1),
           "| | " + " | ".join(f"**{label}**" for label, _ in cols) + " |"]
    for label, cells in t.rows:
        out.append("| " + " | ".join([label, *(_md_cell(c, t.with_paper, t.number_format) for c in cells)]) + " |")
    out += [""] + [f"- {n}" for n in t.notes]
    return "\n".join(out)


def _html_cell(c: Cell, with_paper: bool, spec: str = ".2f") -> str:
    cls = {BEST: "best", SECOND: "second"}.get(c.mark or "", "")
    inner = html.escape(c.shown(spec))
    inner = f"<strong>{inner}</strong>" if c.mark == BEST else f"<u>{inner}</u>" if c.mark == SECOND else inner
    if with_paper and c.paper is not None:
        sign = "pos" if c.diff >= 0 else "neg"
        inner += (f'<span class="paper">{c.paper:.2f}</span>'
                  f'<span class="diff {sign}">{c.diff:+.2f}</span>')
    return f'<td class="{cls}">{inner}</td>' if cls else f"<td>{inner}</td>"


def grouped_html(t: GroupedTable) -> str:
    head1 = [f'<th rowspan="2" class="corner">{html.escape(t.corner)}</th>']
    head2 = []
    for g, group in t.groups:
        head1.append(f'<th colspan="{len(group)}" class="group">{html.escape(g)}</th>')
        head2 += [f'<th class="col"><abbr title="{html.escape(full)}">{html.escape(label)}</abbr></th>'
                  for label, full in group]
    body = ["<tr>" + f'<th class="row">{html.escape(label)}</th>'
            + "".join(_html_cell(c, t.with_paper, t.number_format) for c in cells) + "</tr>" for label, cells in t.rows]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in t.notes)
    return (f'<div class="wide"><table class="table2"><caption>{html.escape(t.title)}</caption>'
            f'<tr>{"".join(head1)}</tr><tr>{"".join(head2)}</tr>' + "\n".join(body) + "</table></div>"
            + (f'<ul class="notes">{notes}</ul>' if notes else ""))
