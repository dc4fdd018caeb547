"""A report as a list of plain blocks, rendered once to markdown and once to self-contained HTML, so both files always
say the same thing."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Union

from genbench.report.tables import BEST, SECOND, Table, table_markdown


@dataclass
class Plot:
    kind: str  # "gain", "shots", "quality", "mts"
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


Block = Union[Heading, Para, Notice, Bullets, Simple, Table, Plot]


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
        elif isinstance(b, Plot):
            out.append(f"![{b.alt}]({b.file})\n\n{b.caption}" if b.file else f"*{b.title}: not drawn: {b.skipped}.*")
        out.append("")
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 72em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
.notice { background: #fff3cd; border-left: 4px solid #e0a800; padding: 0.6em 1em; }
.skipped { color: #666; font-style: italic; }
figure { margin: 1em 0 2em; } img { max-width: 100%; } figcaption { font-size: 0.9em; color: #444; }
"""


def _cell(text: str, mark: str | None) -> str:
    t = html.escape(text)
    return f"<strong>{t}</strong>" if mark == BEST else f"<u>{t}</u>" if mark == SECOND else t


def _table_html(header: list[str], rows: list[list[str]], caption: str = "", marks=None, first_mark: int = 0) -> str:
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    for i, row in enumerate(rows):
        cells = []
        for j, c in enumerate(row):
            k = j - first_mark
            m = marks[i][k] if marks is not None and 0 <= k < len(marks[i]) else None
            cells.append(f"<td>{_cell(c, m)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
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
        elif isinstance(b, Plot):
            if b.file:
                body.append(f'<figure><img src="{html.escape(b.file)}" alt="{html.escape(b.alt)}">'
                            f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
            else:
                body.append(f'<p class="skipped">{html.escape(b.title)}: not drawn: {html.escape(b.skipped or "")}.</p>')
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")
