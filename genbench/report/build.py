"""`genbench report`: results.json files from one or more runs -> report.md, report.html and the PNG figures beside them."""

from __future__ import annotations

import logging
import os
from typing import Any

from genbench.cost import PAPER_NOTE, PAPER_TEXT_USD_PER_IMAGE, PAPER_USD_PER_IMAGE
from genbench.errors import UsageError
from genbench.report import plots
from genbench.report.document import Block, Bullets, Heading, Notice, Para, Simple, to_html, to_markdown
from genbench.report.load import merge_results
from genbench.report.records import notice, untrained
from genbench.report.tables import dataset_table, fmt, series_key, series_labels

log = logging.getLogger(__name__)

TITLE = "genbench report"


def _display_name(dataset: str) -> str:
    from genbench.catalog import get_dataset

    try:
        return get_dataset(dataset).display_name
    except UsageError:  # a dataset from a newer or private catalog: its name is still a fine title
        return dataset


def _tables(records: list[dict[str, Any]]) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Scores per dataset (Table 2 style)"),
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
        title = f"{name if name == d else f'{name} ({d})'}: metric {', '.join(metrics)}, n_test {', '.join(n_test)}, CLIP {', '.join(clips)}"
        blocks.append(dataset_table(title, recs))
    return blocks


def _cost(records: list[dict[str, Any]]) -> list[Block]:
    labels = series_labels(records)
    seen: dict[tuple, list[str]] = {}
    for r in records:
        k = (r["dataset"], r.get("collection") or series_key(r))
        if k in seen:
            continue
        c = r.get("cost") or {}
        seen[k] = [r["dataset"], labels[series_key(r)], str(c.get("device", "-")), fmt(c.get("device_seconds")),
                   fmt(c.get("gpu_seconds")), fmt(c.get("cpu_seconds")), fmt(c.get("usd_per_image"))]
    return [
        Heading(2, "Cost"),
        Para("Ours: measured GPU-seconds of each collection at the GPU instance's price plus its CPU-seconds (a CPU "
             "worker's core-seconds, retrieval's download and decode time) at the CPU instance's price, per image."),
        Simple(["dataset", "source / strategy", "device", "device s", "GPU s", "CPU s", "USD/image"], sorted(seen.values())),
        Para("The paper's Table 1 for comparison:"),
        Simple(["source", "USD per image (paper, Table 1)"], [[k, f"{v:.2e}"] for k, v in PAPER_USD_PER_IMAGE.items()]),
        Para(f"{PAPER_NOTE} (paper text: {PAPER_TEXT_USD_PER_IMAGE:.2e} USD per generated image)"),
    ]


def _figure_section(heading: str, items: list[plots.Plot]) -> list[Block]:
    return [Heading(2, heading), *items]


def build_report(results_dirs: list[str], out_dir: str) -> dict[str, Any]:
    """Merge the results.json of every directory in ``results_dirs`` (later ones win on the same collection and shot
    count) and write report.md, report.html and the figures as PNGs into ``out_dir`` (a local directory).

    Returns ``{"report_md", "report_html", "records", "sources", "plots": [{kind, file, title, alt}],
    "skipped": [{kind, title, reason}], "notes", "untrained_models"}``.
    """
    if "://" in out_dir and not out_dir.startswith("file://"):
        raise UsageError("--out", out_dir, "a local directory (the HTML refers to its PNGs by relative path)")
    merged = merge_results(list(results_dirs))
    records = merged.records
    out_dir = out_dir.removeprefix("file://")
    os.makedirs(out_dir, exist_ok=True)

    colours = plots.colour_map(records)
    gain = plots.gain_bars(records, out_dir, colours)
    shots = plots.shot_curves(records, out_dir, colours)
    quality = plots.quality_scatter(records, out_dir, colours)
    mts = plots.mts_scatter(records, out_dir, colours)
    warning = notice(records)

    blocks: list[Block] = [Heading(1, TITLE)]
    if warning:
        blocks.append(Notice(warning))
    blocks.append(Para(f"{len(records)} result record(s) from: {', '.join(merged.files)}."))
    if merged.notes:
        blocks.append(Bullets(merged.notes))
    blocks += _tables(records)
    blocks += _figure_section("Gain over zero-shot (Fig. 2 style)", gain)
    blocks += _figure_section("Score and cost against shots (Fig. 3 style)", shots)
    blocks += _figure_section("Data-quality measures against linear probe (Fig. 4 style)", quality)
    blocks += _figure_section("CLER gain against mean text similarity (Fig. 6 style)", mts)
    blocks += _cost(records)

    md_path, html_path = os.path.join(out_dir, "report.md"), os.path.join(out_dir, "report.html")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(to_markdown(blocks))
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(to_html(blocks, TITLE))
    every = gain + shots + quality + mts
    drawn = [p for p in every if p.file]
    log.info("report: wrote %s, %s and %d figure(s); %d skipped", md_path, html_path, len(drawn), len(every) - len(drawn))
    return {
        "report_md": md_path,
        "report_html": html_path,
        "records": len(records),
        "sources": merged.files,
        "plots": [{"kind": p.kind, "file": os.path.join(out_dir, p.file), "title": p.title, "alt": p.alt} for p in drawn],
        "skipped": [{"kind": p.kind, "title": p.title, "reason": p.skipped} for p in every if not p.file],
        "notes": merged.notes,
        "untrained_models": any(untrained(r) for r in records),
    }
