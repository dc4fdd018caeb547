"""A plan as text (a table for people) and as JSON-ready data (for machines)."""

from __future__ import annotations

import dataclasses
from typing import Any

from genbench.planning.estimate import LABELLING
from genbench.planning.plan import Plan, PlannedCollection, metric_rows
from genbench.planning.throughput import TABLE_FILE


def _collection_row(pc: PlannedCollection) -> dict[str, Any]:
    c, e, job = pc.collection, pc.estimate, pc.collection.job
    return {
        "dataset": job.dataset, "source": job.source, "variant": job.variant, "uri": job.uri,
        "shots": list(c.planned.shots), "extent": c.extent, "num_classes": job.num_classes,
        "images": c.images, "shards": c.shards, "done_shards": c.done_shards, "embed_shards": c.embed_shards,
        "make_shards": c.make_shards, "make_images": c.make_images, "provisional": c.provisional,
        "estimate": {"device": e.device, "images_per_second": e.images_per_second, "device_hours": e.device_hours,
                     "usd": e.usd, "status": e.status, "basis": e.basis},
    }


def _totals(plan: Plan) -> dict[str, Any]:
    cols = [pc.collection for pc in plan.collections]
    hours: dict[str, float] = {}
    for pc in plan.collections:
        if pc.estimate.device_hours is not None:
            hours[pc.estimate.device] = hours.get(pc.estimate.device, 0.0) + pc.estimate.device_hours
    return {
        "collections": len(cols),
        "images": sum(c.images for c in cols),
        "shards": sum(c.shards for c in cols),
        "done_shards": sum(c.done_shards for c in cols),
        "embed_shards": sum(c.embed_shards for c in cols),
        "make_shards": sum(c.make_shards for c in cols),
        "make_images": sum(c.make_images for c in cols),
        "device_hours": hours,
        "usd": sum(pc.estimate.usd or 0.0 for pc in plan.collections),
        "unpriced_collections": sum(pc.estimate.usd is None for pc in plan.collections),
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    """Everything in the plan as plain JSON data."""
    return {
        "name": plan.name, "out": plan.out, "shards_root": plan.shards_root, "data_root": plan.data_root,
        "clip": plan.clip, "device": plan.device, "ready": plan.ready, "pricing": dataclasses.asdict(plan.pricing),
        "collections": [_collection_row(pc) for pc in plan.collections],
        "totals": _totals(plan),
        "datasets": [dataclasses.asdict(d) for d in plan.datasets],
        "problems": [{"field": p.field, "value": p.value if isinstance(p.value, (str, int, float, type(None)))
                      else repr(p.value), "allowed": p.allowed, "message": str(p)} for p in plan.problems],
        "metrics": metric_rows(plan),
    }


# ------------------------------------------------------------------------------------------------------ text


def _n(x: int) -> str:
    return f"{x:,}"


def _hours(h: float | None) -> str:
    return "-" if h is None else f"{h:,.1f}" if h >= 10 else f"{h:.2g}" if h > 0 else "0"


def _usd(u: float | None) -> str:
    return "?" if u is None else f"{u:,.2f}" if u >= 0.01 or u == 0 else f"{u:.2g}"


def _shots(shots: tuple[int, ...] | list[int]) -> str:
    s = sorted(shots)
    return ",".join(map(str, s)) if len(s) <= 4 else f"{s[0]}..{s[-1]} ({len(s)} counts)"


def _table(heads: tuple[str, ...], rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    """Columns padded to their widest cell; the columns in ``right`` (numbers) aligned right."""
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in [heads, *rows]]


def _groups(plan: Plan, per_collection: bool) -> list[tuple[tuple[str, ...], list[PlannedCollection]]]:
    """Rows of the collections table: one per collection, or one per (source, variant) summed over datasets."""
    groups: dict[tuple[str, ...], list[PlannedCollection]] = {}
    for pc in plan.collections:
        job = pc.collection.job
        key = (job.dataset, job.source, job.variant) if per_collection else (job.source, job.variant)
        groups.setdefault(key, []).append(pc)
    return list(groups.items())


def _shots_cell(pc: PlannedCollection) -> str:
    shots, extent = pc.collection.planned.shots, pc.collection.extent
    return _shots(shots) + (f" (holds {extent})" if extent > max(shots) else "")


def _collections(plan: Plan, per_collection: bool) -> tuple[list[str], dict[str, int]]:
    """The collections table and the rate notes its basis column points to ([n] -> basis text)."""
    t, notes, rows = _totals(plan), {}, []
    heads = (("dataset",) if per_collection else ()) + ("source", "variant") + \
        (() if per_collection else ("datasets",)) + ("shots", "images", "shards", "shards done", "images to make",
                                                      "device", "device-h", "USD", "basis")
    for key, pcs in _groups(plan, per_collection):
        e0 = pcs[0].estimate
        basis = LABELLING if e0.status == LABELLING else f"{e0.status} [{notes.setdefault(e0.basis, len(notes) + 1)}]"
        hours, usd = [pc.estimate.device_hours for pc in pcs], [pc.estimate.usd for pc in pcs]
        variant = key[-1] + ("*" if any(pc.collection.provisional for pc in pcs) else "")
        rows.append(key[:-1] + (variant,) + (() if per_collection else (str(len(pcs)),)) + (
            _shots_cell(pcs[0]),
            _n(sum(pc.collection.images for pc in pcs)),
            _n(sum(pc.collection.shards for pc in pcs)),
            _n(sum(pc.collection.done_shards for pc in pcs)),
            _n(sum(pc.collection.make_images for pc in pcs)),
            e0.device or "-",
            _hours(None if None in hours else sum(hours)),
            _usd(None if None in usd else sum(usd)),
            basis))
    total = dict.fromkeys(heads, "")
    total.update({heads[0]: "total", "images": _n(t["images"]), "shards": _n(t["shards"]),
                  "shards done": _n(t["done_shards"]), "images to make": _n(t["make_images"]),
                  "device-h": ", ".join(f"{_hours(h)} {d}" for d, h in t["device_hours"].items()) or "-",
                  "USD": "?" if t["unpriced_collections"] == t["collections"] else
                  _usd(t["usd"]) + ("+?" if t["unpriced_collections"] else "")})
    numeric = ("datasets", "images", "shards", "shards done", "images to make", "device-h", "USD")
    lines = _table(heads, rows + [tuple(total.values())], {i for i, h in enumerate(heads) if h in numeric})
    if any(pc.collection.provisional for pc in plan.collections):
        lines.append("* provisional name: it depends on a reference that is missing (below)")
    lines.append("shards done: a record and a tar of the recorded size (a run also checks sha256); device-h: "
                 "GPU-hours, or CPU core-hours on cpu; original sources make at most each class's training images.")
    return lines, notes


def format_plan(plan: Plan, per_collection: bool = False) -> str:
    """The plan as readable text: the collections (grouped by source and variant over the datasets, or one row
    each), the bases of the estimate, the datasets and references missing with where to get them, and the metrics."""
    t = _totals(plan)
    table, notes = _collections(plan, per_collection)
    lines = [f"plan {plan.name!r}: output {plan.out} (collections under {plan.shards_root})",
             f"{t['collections']} collection(s) over {len(plan.datasets)} dataset(s): {_n(t['images'])} images in "
             f"{_n(t['shards'])} shards; done: {_n(t['done_shards'])} shards"
             + (f" (+{_n(t['embed_shards'])} to embed only)" if t["embed_shards"] else "")
             + f"; to make: {_n(t['make_images'])} images in {_n(t['make_shards'])} shards", "", *table,
             "", _prices(plan), *(f"  [{i}] {b}" for b, i in notes.items()),
             "", *_datasets(plan), "", *_problems(plan),
             "", "metrics: " + ", ".join(f"{m['name']} ({m['title']})" for m in metric_rows(plan)), ""]
    lines.append("ready to run" if plan.ready else
                 f"not ready: {len(plan.missing_datasets)} dataset(s) and {len(plan.problems)} other reference(s) "
                 "missing; a run stops before writing anything until they are in place")
    return "\n".join(lines)


def _prices(plan: Plan) -> str:
    p = plan.pricing
    per_gpu, per_core = p.usd_per_hour / p.gpus_per_instance, p.cpu_usd_per_hour / p.cpus_per_instance
    return (f"estimate of generation and retrieval (CLIP embedding and scoring not included), at the config's prices: "
            f"a GPU-hour {per_gpu:.4g} USD ({p.instance}), a CPU core-hour {per_core:.4g} USD ({p.cpu_instance}), an "
            f"original image {p.labelling_usd_per_image:g} USD (labelling); rates from {TABLE_FILE}:")


def _datasets(plan: Plan) -> list[str]:
    missing = plan.missing_datasets
    lines = [(f"datasets under {plan.data_root} (data_root, --data-root or $GENBENCH_DATA): "
              f"{len(plan.datasets) - len(missing)} of {len(plan.datasets)} present (test split always; train split "
              "where a source reads it)")]
    for d in plan.datasets:
        state = "present" if not d.missing else f"MISSING {', '.join(d.missing)}"
        lines.append(f"  {d.name:<18} {'+'.join(d.splits):<11} {state}")
    if missing:
        lines.append("where to get the missing datasets (`genbench datasets` lists the catalog):")
        lines += [f"  - {d.get_it}" for d in missing]
    return lines


def _problems(plan: Plan) -> list[str]:
    if not plan.problems:
        return ["references: all in place (caption indexes, generators, required weights)"]
    return ["missing or wrong references (a run exits 2 before writing anything until each is fixed):"] + \
        [f"  - {p}" for p in plan.problems]
