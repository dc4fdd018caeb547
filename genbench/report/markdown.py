"""results.json records -> a plain-text table for the terminal and report.md."""

from __future__ import annotations

from typing import Any

from genbench.cost import PAPER_NOTE, PAPER_USD_PER_IMAGE

TINY_NOTICE = (
    "NOTE: tiny untrained models were used (generator and/or CLIP built offline with random weights). These numbers "
    "prove the plumbing, not the science: do not compare them with the paper."
)

_SCORE_COLS = ("zeroshot", "cler", "cler_text", "linear_probe", "clip_score", "fd_clip", "fid")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.2e}"
    return str(v)


def table_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    cols = [c for c in _SCORE_COLS if any(c in r.get("scores", {}) for r in records)]
    header = ["dataset", "source", "generator", "strategy", "shots", "n_train", "metric", *cols, "USD/image"]
    rows = []
    for r in records:
        rows.append(
            [
                r["dataset"], r["source"], r.get("generator") or "-", r.get("strategy") or "-", str(r["shots"]),
                str(r["n_train"]), r["metric"], *[_fmt(r["scores"].get(c)) for c in cols],
                _fmt((r.get("cost") or {}).get("usd_per_image")),
            ]
        )
    return header, rows


def format_table(records: list[dict[str, Any]]) -> str:
    header, rows = table_rows(records)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    if any(r.get("tiny_models") for r in records):
        out.append(TINY_NOTICE)
    return "\n".join(out)


def render_markdown(records: list[dict[str, Any]]) -> str:
    header, rows = table_rows(records)
    parts = ["# genbench results", ""]
    if any(r.get("tiny_models") for r in records):
        parts += [f"> {TINY_NOTICE}", ""]
    parts += ["Scores are percentages of each dataset's own metric on its real test split.", ""]
    parts.append("| " + " | ".join(header) + " |")
    parts.append("|" + "---|" * len(header))
    parts += ["| " + " | ".join(r) + " |" for r in rows]
    parts += [
        "",
        "## Cost per image",
        "",
        "Ours is measured device-seconds times the config's price table. The paper's Table 1 for comparison:",
        "",
        "| source | USD per image (paper, Table 1) |",
        "|---|---|",
        *[f"| {k} | {v:.3g} |" for k, v in PAPER_USD_PER_IMAGE.items()],
        "",
        PAPER_NOTE,
        "",
    ]
    return "\n".join(parts)
