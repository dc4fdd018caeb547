"""Result records as the plain-text table `genbench run` prints."""

from __future__ import annotations

from typing import Any

from genbench.report.records import notice, toy_notice
from genbench.report.tables import table_rows


def format_table(records: list[dict[str, Any]]) -> str:
    header, rows = table_rows(records)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    out += [text for text in (notice(records), toy_notice(records)) if text]
    return "\n".join(out)
