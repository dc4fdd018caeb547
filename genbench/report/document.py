"""A report as a list of plain blocks, rendered once to markdown and once to self-contained HTML, so both files always
say the same thing."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Union

from genbench.report.table2 import GroupedTable, grouped_html, grouped_markdown
from genbench.report.tables import BEST, SECOND, Table, table_markdown


@dataclass
class Plot:
    kind: str  # "gain", "shots", "quality", "eval_time", "mts", "fig9", "fig11", "grid"
    title: str
    file: str | None = None  # name relative to the report's directory
    alt: str = ""
    caption: str = ""
    skipped: str | None = None  # why no file was drawn
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Notice:
    """A warning the reader must not miss (untrained models)."""

    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Simple:
    """A small unmarked table."""

    header: list[str]
    rows: list[list[str]]


Block = Union[Heading, Para, Notice, Bullets, Simple, Table, GroupedTable, Plot]


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Notice):
            out.append(f"> {b.text}")
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {i}" for i in b.items))
        elif isinstance(b, Simple):
            out.append("\n".join(["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header),
                                  *("| " + " | ".join(r) + " |" for r in b.rows)]))
        elif isinstance(b, Table):
            out.append(f"**{b.title}**\n\n" + table_markdown(b))
        elif isinstance(b, GroupedTable):
            out.append(grouped_markdown(b))
        elif isinstance(b, Plot):
            out.append(f"![{b.alt}]({b.file})\n\n{b.caption}" if b.file else f"*{b.title}: not drawn: {b.skipped}.*")
        out.append("")
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 80em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child, th.t, td.t { text-align: left; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
.notice { background: #fff3cd; border-left: 4px solid #e0a800; padding: 0.6em 1em; }
.skipped { color: #666; font-style: italic; }
figure { margin: 1em 0 2em; } figcaption { font-size: 0.9em; color: #444; max-width: 60em; }
figure img { display: block; max-width: 100%; height: auto; }
.wide { overflow-x: auto; max-width: 100%; }
table.table2 { font-size: 0.75em; }
table.table2 th, table.table2 td { padding: 0.1em 0.15em; white-space: nowrap; }
table.table2 th.group { text-align: center; background: #f2f2f2; }
table.table2 th.col { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; padding: 0.3em 0.1em; }
table.table2 th.row, table.table2 th.corner { white-space: normal; min-width: 5.5em; }
table.table2 td .paper, table.table2 td .diff { display: block; color: #666; }
table.table2 td .diff.neg { color: #a00; } table.table2 td .diff.pos { color: #060; }
table.table2 abbr { text-decoration: none; }
ul.notes { font-size: 0.85em; color: #444; }
"""


def _cell(text: str, mark: str | None) -> str:
    t = html.escape(text)
    return f"<strong>{t}</strong>" if mark == BEST else f"<u>{t}</u>" if mark == SECOND else t


def _numeric(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return text in ("-", "")


def _table_html(header: list[str], rows: list[list[str]], caption: str = "", marks=None, first_mark: int = 0) -> str:
    # a column of words reads left-aligned, a column of numbers right-aligned (so the digits line up)
    words = {j for j in range(len(header)) if any(j < len(r) and not _numeric(r[j]) for r in rows)}

    def cls(j: int) -> str:
        return ' class="t"' if j in words and j > 0 else ""

    parts = ['<div class="wide"><table>']
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append("<tr>" + "".join(f"<th{cls(j)}>{html.escape(h)}</th>" for j, h in enumerate(header)) + "</tr>")
    for i, row in enumerate(rows):
        cells = []
        for j, c in enumerate(row):
            k = j - first_mark
            m = marks[i][k] if marks is not None and 0 <= k < len(marks[i]) else None
            cells.append(f"<td{cls(j)}>{_cell(c, m)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table></div>")
    return "\n".join(parts)


def to_html(blocks: list[Block], title: str) -> str:
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{html.escape(b.text)}</p>")
        elif isinstance(b, Notice):
            body.append(f'<p class="notice"><strong>{html.escape(b.text)}</strong></p>')
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Simple):
            body.append(_table_html(b.header, b.rows))
        elif isinstance(b, Table):
            body.append(_table_html(b.header, b.rows, b.title, b.marks, b.first_score_col))
        elif isinstance(b, GroupedTable):
            body.append(grouped_html(b))
        elif isinstance(b, Plot):
            if b.file:
                body.append(f'<figure><img src="{html.escape(b.file)}" alt="{html.escape(b.alt)}">'
                            f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
            else:
                body.append(f'<p class="skipped">{html.escape(b.title)}: not drawn: {html.escape(b.skipped or "")}.</p>')
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")
