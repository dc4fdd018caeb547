"""`genbench report`: results.json files from one or more runs -> report.md, report.html and the PNG figures beside them,
laid out as the paper: Table 2, Figs. 2-6, 9 and 11, image grids, the cost table, then every record per dataset."""

from __future__ import annotations

import logging
import os
from typing import Any

from genbench.errors import UsageError
from genbench.report import grids, plots, scatter
from genbench.report.costs import cost_blocks
from genbench.report.document import Block, Bullets, Heading, Notice, Para, Plot, to_html, to_markdown
from genbench.report.load import merge_results
from genbench.report.records import notice, toy_notice, untrained
from genbench.report.sweep import sweep_blocks
from genbench.report.table2 import GroupedTable, table2
from genbench.report.table3 import table3
from genbench.report.tables import dataset_table

log = logging.getLogger(__name__)

TITLE = "genbench report"


def _display_name(dataset: str) -> str:
    from genbench.catalog import get_dataset

    try:
        return get_dataset(dataset).display_name
    except UsageError:  # a dataset from a newer or private catalog: its name is still a fine title
        return dataset


def _table2(records: list[dict[str, Any]], with_paper: bool) -> list[Block]:
    t = table2(records, with_paper)
    blocks: list[Block] = [Heading(2, "Table 2: CLER of generated data per generator and strategy")]
    if isinstance(t, GroupedTable):
        return blocks + [Para("Per column, bold marks the best value and underline (italic in markdown) the second "
                              "best. Column labels abbreviate the datasets (hover for the full name)."), t]
    return blocks + [Para(f"Table 2: not drawn: {t}.")]


def _table3(records: list[dict[str, Any]], with_paper: bool) -> list[Block]:
    t = table3(records, with_paper)
    if not isinstance(t, GroupedTable):
        return []  # a run without adaptation: nothing to say
    return [Heading(2, "Table 3: CLER of generated data with knowledge injection"), t]


def _tables(records: list[dict[str, Any]]) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Every record per dataset"),
        Para("Percent of each dataset's own metric on its real test split. Per column, bold marks the best value and "
             "underline (italic in markdown) the second best; for Fréchet distances lower is better. "
             "A column where every row ties is not marked."),
    ]
    for d in sorted({r["dataset"] for r in records}):
        recs = [r for r in records if r["dataset"] == d]
        metrics = sorted({str(r.get("metric", "?")) for r in recs})
        n_test = sorted({str(r.get("n_test", "?")) for r in recs})
        clips = sorted({str(r.get("clip", "?")) for r in recs})
        name = _display_name(d)
        title = (f"{name if name == d else f'{name} ({d})'}: metric {', '.join(metrics)}, n_test {', '.join(n_test)}, "
                 f"CLIP {', '.join(clips)}")
        blocks.append(dataset_table(title, recs))
    return blocks


def _figures(records: list[dict[str, Any]], out_dir: str) -> list[tuple[str, list[Plot]]]:
    """(section heading, plots) in the paper's order."""
    return [
        ("Gain over zero-shot per dataset (Fig. 2)", plots.fig2_gain(records, out_dir)),
        ("Score and cost against shots per concept group (Fig. 3)", plots.fig3_shots(records, out_dir)),
        ("Data-quality measures against linear probe (Fig. 4)", scatter.fig4_quality(records, out_dir)),
        ("Evaluation time per metric (Fig. 5)", plots.fig5_eval_time(records, out_dir)),
        ("Generated data's CLER gain against mean text similarity (Fig. 6)", scatter.fig6_mts(records, out_dir)),
        ("CLER against linear probe: original and retrieved data (Fig. 9)", scatter.fig9_real(records, out_dir)),
        ("CLER against fine-tuned CLIP (Fig. 10)", scatter.fig10_finetune(records, out_dir)),
        ("CLER against linear probe per CLIP backbone (Fig. 11)", scatter.fig11_backbones(records, out_dir)),
        ("Images per class and strategy (Fig. 7 style)", grids.image_grids(records, out_dir)),
    ]


def build_report(results_dirs: list[str], out_dir: str, paper: bool = False) -> dict[str, Any]:
    """Merge the results.json of every directory in ``results_dirs`` (later ones win on the same collection and shot
    count) and write report.md, report.html and the figures as PNGs into ``out_dir`` (a local directory). With
    ``paper``, each Table 2 cell also shows the paper's value and our difference from it.

    Returns ``{"report_md", "report_html", "records", "sources", "plots": [{kind, file, title, alt, stats}],
    "skipped": [{kind, title, reason}], "notes", "untrained_models"}``.
    """
    if "://" in out_dir and not out_dir.startswith("file://"):
        raise UsageError("--out", out_dir, "a local directory (the HTML refers to its PNGs by relative path)")
    merged = merge_results(list(results_dirs))
    records = merged.records
    out_dir = out_dir.removeprefix("file://")
    os.makedirs(out_dir, exist_ok=True)

    sections = _figures(records, out_dir)
    blocks: list[Block] = [Heading(1, TITLE)]
    blocks += [Notice(text) for text in (notice(records), toy_notice(records)) if text]
    blocks.append(Para(f"{len(records)} result record(s) from: {', '.join(merged.files)}."))
    if merged.notes:
        blocks.append(Bullets(merged.notes))
    blocks += _table2(records, paper)
    blocks += _table3(records, paper)
    blocks += sweep_blocks(records)
    for heading, items in sections:
        blocks += [Heading(2, heading), *items]
    blocks += cost_blocks(records)
    blocks += _tables(records)

    md_path, html_path = os.path.join(out_dir, "report.md"), os.path.join(out_dir, "report.html")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(to_markdown(blocks))
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(to_html(blocks, TITLE))
    every = [p for _, items in sections for p in items]
    drawn = [p for p in every if p.file]
    log.debug("report: wrote %s, %s and %d figure(s); %d skipped", md_path, html_path, len(drawn), len(every) - len(drawn))
    return {
        "report_md": md_path,
        "report_html": html_path,
        "records": len(records),
        "sources": merged.files,
        "plots": [{"kind": p.kind, "file": os.path.join(out_dir, p.file), "title": p.title, "alt": p.alt,
                   "stats": p.stats} for p in drawn],
        "skipped": [{"kind": p.kind, "title": p.title, "reason": p.skipped} for p in every if not p.file],
        "notes": merged.notes,
        "untrained_models": any(untrained(r) for r in records),
    }
