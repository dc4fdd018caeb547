"""The cost table: what our collections cost per image, per source, beside the paper's Table 1 and the inputs its
Table 5 says Table 1 came from (which disagree with it, both shown), and what our seconds cost at the paper's spot
rates."""

from __future__ import annotations

from typing import Any

from genbench.cost import PAPER_NOTE, PAPER_SPOT, PAPER_USD_PER_IMAGE, paper_rows
from genbench.report.document import Block, Heading, Para, Simple
from genbench.report.tables import finite, fmt_column, series_key, series_labels

SCI = ".2e"  # USD per image spans 1e-10 (copying a file) to 1e-2 (labelling it): always scientific


def _text(rows: list[list[Any]], numbers: dict[int, str | None]) -> list[list[str]]:
    """Rows of raw cells as display strings: column ``j`` in ``numbers`` in one format for the whole column (its spec,
    or :func:`column_format` for None), every other cell as it is."""
    cols = {j: fmt_column([r[j] for r in rows], spec) for j, spec in numbers.items()}
    return [[cols[j][i] if j in cols else str(c) for j, c in enumerate(r)] for i, r in enumerate(rows)]


def _int(v: Any) -> str:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else "-"


def _collections(records: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """One record per collection: cost is the collection's, the same in each of its shot counts' records."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in records:
        out.setdefault((r["dataset"], r.get("collection") or series_key(r)), r)
    return out


def _total(costs: list[dict[str, Any]], key: str) -> float | None:
    vals = [v for v in (finite(c.get(key)) for c in costs) if v is not None]
    return sum(vals) if vals else None


def _per_image(costs: list[dict[str, Any]], key: str) -> float | None:
    """USD per image over collections, weighted by their images (a plain mean where records predate the count)."""
    pairs = [(v, c.get("images")) for v, c in ((finite(c.get(key)), c) for c in costs) if v is not None]
    if not pairs:
        return None
    if all(isinstance(n, int) and n > 0 for _, n in pairs):
        return sum(v * n for v, n in pairs) / sum(n for _, n in pairs)
    return sum(v for v, _ in pairs) / len(pairs)


def ours_per_source(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per source: collections, images, seconds, and USD per image weighted by each collection's images."""
    by_source: dict[str, list[dict[str, Any]]] = {}
    for r in _collections(records).values():
        by_source.setdefault(str(r.get("source")), []).append(r.get("cost") or {})
    rows = []
    for source, costs in by_source.items():
        priced = sorted({str(c.get("priced_by")) for c in costs if c.get("priced_by")})
        images = [n for n in (c.get("images") for c in costs) if isinstance(n, int)]
        rows.append({"source": source, "collections": len(costs), "priced_by": ", ".join(priced) or "-",
                     "images": sum(images) if images else None, "gpu_seconds": _total(costs, "gpu_seconds"),
                     "cpu_seconds": _total(costs, "cpu_seconds"), "usd_per_image": _per_image(costs, "usd_per_image"),
                     "usd_per_image_spot": _per_image(costs, "usd_per_image_spot")})
    order = {s: i for i, s in enumerate(PAPER_USD_PER_IMAGE)}
    return sorted(rows, key=lambda r: (order.get(r["source"], len(order)), r["source"]))


def cost_blocks(records: list[dict[str, Any]], per_collection: bool = True) -> list[Block]:
    """The cost section: ours per source beside Table 1 and Table 5's inputs, then (optionally) each collection."""
    paper = {row["source"]: row for row in paper_rows()}
    ours = ours_per_source(records)
    spot = (f"{PAPER_SPOT['usd_per_hour']} USD/h per GPU instance of {PAPER_SPOT['gpus_per_instance']} GPU, "
            f"{PAPER_SPOT['cpu_usd_per_hour']} USD/h per {PAPER_SPOT['cpus_per_instance']}-vCPU instance")
    rows = []
    for o in ours:
        p = paper.get(o["source"], {})
        rows.append([o["source"], o["priced_by"], str(o["collections"]), _int(o["images"]),
                     o["gpu_seconds"], o["cpu_seconds"], o["usd_per_image"], o["usd_per_image_spot"],
                     p.get("usd_per_image_table1"), p.get("usd_per_image_from_inputs")])
    for source, p in paper.items():  # the paper's sources we have no records of still get their paper figures
        if source not in {o["source"] for o in ours}:
            rows.append([source, "(no records)", "0", "-", None, None, None, None, p["usd_per_image_table1"],
                         p["usd_per_image_from_inputs"]])
    rows = _text(rows, {4: None, 5: None, 6: SCI, 7: SCI, 8: SCI, 9: SCI})
    blocks: list[Block] = [
        Heading(2, "Cost per image"),
        Para("Ours: generated data is its measured GPU-seconds at the GPU price; retrieved data its measured query, "
             "download and embedding seconds (CPU-seconds at the CPU price, device-seconds at the device price); "
             "original data the configured labelling price per image (the paper's human-labelling price), since "
             "copying it costs nothing. Per source, USD per image is weighted by each collection's images. "
             f"\"At the paper's spot rates\" prices our same seconds at {spot}."),
        Simple(["source", "priced by", "collections", "images", "GPU s", "CPU s", "USD/image (ours)",
                "ours at the paper's spot rates", "paper Table 1", "paper Table 5 inputs"], rows),
        Para("The paper's Table 5 (Appendix 8), the inputs behind Table 1:"),
        Simple(["source", "how", "instance", "USD/h", "hours per 1k images", "USD/image from these inputs",
                "USD/image in Table 1", "Table 1 / inputs"],
               _text([[p["source"], p["how"], p["instance"], p["usd_per_hour"], p["hours_per_1k_images"],
                       p["usd_per_image_from_inputs"], p["usd_per_image_table1"],
                       p["usd_per_image_table1"] / p["usd_per_image_from_inputs"] if p["usd_per_image_from_inputs"]
                       else None] for p in paper.values()], {3: None, 4: None, 5: SCI, 6: SCI, 7: None})),
        Para(PAPER_NOTE),
    ]
    if per_collection:
        blocks += _per_collection(records)
    return blocks


def _per_collection(records: list[dict[str, Any]]) -> list[Block]:
    labels = series_labels(records)
    rows = []
    for r in _collections(records).values():
        c = r.get("cost") or {}
        rows.append([r["dataset"], labels[series_key(r)], str(c.get("device", "-")), str(c.get("priced_by") or "-"),
                     _int(c.get("images")), c.get("gpu_seconds"), c.get("cpu_seconds"), c.get("usd_per_image"),
                     c.get("usd_per_image_spot")])
    rows = _text(sorted(rows, key=lambda r: [str(c) for c in r]), {5: None, 6: None, 7: SCI, 8: SCI})
    return [
        Heading(3, "Per collection"),
        Simple(["dataset", "source / strategy", "device", "priced by", "images", "GPU s", "CPU s", "USD/image",
                "at spot rates"], rows),
    ]
