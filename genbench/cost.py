"""Measured device-seconds -> USD per image, beside the paper's Table 1.

GPU-seconds are priced at the GPU instance's rate per GPU, CPU-seconds (a CPU worker's core-seconds, download and
decode time) at the CPU instance's rate per core: the paper prices generation on an A100 instance and retrieval on a
32-vCPU one, and a CPU-second is never billed at a GPU's price.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Iterable

# GenBench paper, Table 1 (USD per image) and Table 5 / Appendix 8 (the inputs it says it was computed from).
PAPER_USD_PER_IMAGE = {"generated": 2.54e-4, "retrieved": 3.93e-5, "original": 1.2e-2}
PAPER_TABLE5 = {
    # source: (how, instance, USD per hour, hours per 1,000 images)
    "generated": ("model inference", "Azure NC24ads A100 v4 (1x A100), spot", 1.47, 1.74),
    "retrieved": ("text-to-text search", "Azure E32ads v5 (32 vCPU), spot", 0.21, 0.60),
    "original": ("human labelling", "Amazon SageMaker Ground Truth price list", None, None),
}
# The paper's spot rates, to price our measured seconds as the paper would have.
PAPER_SPOT = {"usd_per_hour": 1.47, "gpus_per_instance": 1, "cpu_usd_per_hour": 0.21, "cpus_per_instance": 32}
# Both machine rows of Table 1 disagree with Table 5's own inputs: 1.47 x 1.74 / 1000 = 2.56e-3 (ten times the table's
# 2.54e-4) and 0.21 x 0.60 / 1000 = 1.26e-4 (three times the table's 3.93e-5).
PAPER_TEXT_USD_PER_IMAGE = 1.74 * 1.47 / 1000.0
PAPER_NOTE = (
    "The paper's Table 1 disagrees with its own inputs (Table 5): 1.74 GPU-hours per 1,000 generated images at "
    "1.47 USD/h give 2.56e-3 USD per image, not 2.54e-4; 0.60 hours per 1,000 retrieved images at 0.21 USD/h give "
    "1.26e-4, not 3.93e-5. Both readings are shown."
)


def paper_rows() -> list[dict[str, Any]]:
    """Table 1 beside Table 5's inputs, one row per source: the table's USD per image and what its inputs give."""
    rows = []
    for source, (how, instance, rate, hours) in PAPER_TABLE5.items():
        from_inputs = rate * hours / 1000.0 if rate is not None and hours is not None else None
        rows.append({"source": source, "how": how, "instance": instance, "usd_per_hour": rate,
                     "hours_per_1k_images": hours, "usd_per_image_table1": PAPER_USD_PER_IMAGE[source],
                     "usd_per_image_from_inputs": from_inputs})
    return rows


def usd(gpu_seconds: float, cpu_seconds: float, pricing: Any) -> float:
    """GPU-seconds at the per-GPU share of the GPU instance's hourly price, CPU-seconds at the per-core share of the
    CPU instance's."""
    per_gpu = pricing.usd_per_hour / max(1, pricing.gpus_per_instance)
    per_cpu = pricing.cpu_usd_per_hour / max(1, pricing.cpus_per_instance)
    return (gpu_seconds * per_gpu + cpu_seconds * per_cpu) / 3600.0


def record_seconds(record: dict[str, Any]) -> tuple[float, float]:
    """(GPU-seconds, CPU-seconds) of one shard record. Records written before CPU-seconds were kept have only
    ``device_seconds``: on a CPU device those are one worker's core-seconds."""
    gpu = float(record.get("gpu_seconds", 0.0) or 0.0)
    if "cpu_seconds" in record:
        return gpu, float(record["cpu_seconds"] or 0.0)
    return gpu, 0.0 if gpu else float(record.get("device_seconds", 0.0) or 0.0)


def collection_cost(records: Iterable[dict[str, Any]], pricing: Any, fetch_cpu_seconds: float = 0.0,
                    kind: str | None = None, query_cpu_seconds: float = 0.0) -> dict[str, Any]:
    """What a collection cost per image, as the paper counts it.

    Generated data: measured device-seconds at the device's price. Retrieved data: its shards' seconds (decoding and
    embedding) plus the measured CPU-seconds of its search (``query_cpu_seconds``) and downloads (``fetch_cpu_seconds``)
    at the CPU price. Original
    data (``kind="original"``): the configured labelling price per image; the seconds spent copying it are kept
    beside it, measured but not what the data costs. ``usd_per_image_spot`` prices the same seconds at the paper's
    spot rates."""
    records = list(records)
    gpu = cpu = device_s = 0.0
    for r in records:
        g, c = record_seconds(r)
        gpu, cpu, device_s = gpu + g, cpu + c, device_s + float(r.get("device_seconds", 0.0) or 0.0)
    images = sum(int(r.get("samples", 0)) for r in records)
    total_cpu = cpu + float(fetch_cpu_seconds) + float(query_cpu_seconds)
    return {
        "device": next((r.get("device", "cpu") for r in records), "cpu"),
        "device_seconds": device_s,
        "gpu_seconds": gpu,
        "cpu_seconds": total_cpu,
        "fetch_cpu_seconds": float(fetch_cpu_seconds),
        "query_cpu_seconds": float(query_cpu_seconds),
        "images": images,
        "instance": pricing.instance,
        "usd_per_hour": pricing.usd_per_hour,
        "gpus_per_instance": pricing.gpus_per_instance,
        "cpu_instance": pricing.cpu_instance,
        "cpu_usd_per_hour": pricing.cpu_usd_per_hour,
        "cpus_per_instance": pricing.cpus_per_instance,
        "usd_per_image": usd(gpu, total_cpu, pricing) / images if images else None,
        "usd_per_image_spot": usd(gpu, total_cpu, SimpleNamespace(**PAPER_SPOT)) / images if images else None,
        "priced_by": "measured seconds",
    } | (_labelled(pricing) if kind == "original" else {})


def _labelled(pricing: Any) -> dict[str, Any]:
    price = float(getattr(pricing, "labelling_usd_per_image", PAPER_USD_PER_IMAGE["original"]))
    return {"usd_per_image": price, "usd_per_image_spot": price, "priced_by": "labelling price",
            "labelling_usd_per_image": price}
