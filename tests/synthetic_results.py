"""Synthetic result records for all 22 of the paper's datasets, with plausible scores, and tiny real collections to
draw image grids from. Shared by the report tests and the browser check (not a test module itself).

The scores are made up but shaped like the paper's: generated CLER at 20 shots near Table 2 (SD rows), generated
gain over zero-shot rising with the dataset's MTS, scores rising with shots, original above retrieved above
generated, linear probe tracking CLER. Every record is marked as coming from trained models: the report must lay
it out as it would a real reproduction.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from genbench.catalog import get_dataset
from genbench.cost import PAPER_SPOT
from genbench.report.paper import DATASETS, TABLE2

CLIP = "ViT-B-32:openai"
SD = "stabilityai/stable-diffusion-2-1-base"
BACKBONES = {"RN50:openai": -6.0, "ViT-B-16:openai": 3.0, "ViT-L-14:openai": 8.0}
STRATEGIES = ("st", "ce", "dt", "np", "np+rd", "rd", "ra")
SHOTS = (1, 5, 20, 100, 500)
GRID_DATASETS = ("cifar10", "oxford_pets")
LABELLING = 1.2e-2


def _usd(gpu_s: float, cpu_s: float) -> float:
    return (gpu_s * PAPER_SPOT["usd_per_hour"] / PAPER_SPOT["gpus_per_instance"]
            + cpu_s * PAPER_SPOT["cpu_usd_per_hour"] / PAPER_SPOT["cpus_per_instance"]) / 3600


def _cost(source: str, images: int) -> dict[str, Any]:
    if source == "original":
        return {"device": "cpu", "device_seconds": 0.001 * images, "gpu_seconds": 0.0, "cpu_seconds": 0.001 * images,
                "images": images, "usd_per_image": LABELLING, "usd_per_image_spot": LABELLING,
                "priced_by": "labelling price"}
    gpu_s, cpu_s = ((0.9 * images, 0.05 * images) if source == "generated" else (0.002 * images, 0.3 * images))
    usd = _usd(gpu_s, cpu_s) / images
    # priced at the run's own (here: 2x the paper's on-demand-ish) rate, and at the paper's spot rates
    return {"device": "cuda:0", "device_seconds": gpu_s, "gpu_seconds": gpu_s, "cpu_seconds": cpu_s, "images": images,
            "usd_per_image": 2 * usd, "usd_per_image_spot": usd, "priced_by": "measured seconds"}


def _eval_seconds(rng: np.random.Generator, scores: dict[str, float], n_test: int, n_train: int) -> dict[str, float]:
    base = {"zeroshot": 2e-6 * n_test, "cler": 3e-6 * n_test, "cler_text": 4e-6 * n_test,
            "linear_probe": 0.5 + 2e-4 * n_train, "clip_score": 1e-5 * n_train + 0.01, "fd_clip": 0.2 + 1e-5 * n_test}
    return {m: float(base[m] * rng.uniform(0.8, 1.25)) for m in scores if m in base}  # finetune: not a metric


def _record(spec: Any, source: str, strategy: str | None, shots: int, clip: str, scores: dict[str, float],
            rng: np.random.Generator, root: str, max_shots: int, mts: float | None = None) -> dict[str, Any]:
    variant = f"sd21-base_{strategy}_s0" if source == "generated" else f"{source}_s0"
    n_train = shots * spec.num_classes
    rec = {
        "dataset": spec.name, "group": spec.group, "source": source, "generator": SD if source == "generated" else None,
        "strategy": strategy, "shots": shots, "clip": clip, "metric": spec.metric, "n_train": n_train,
        "n_test": spec.test_size, "variant": variant, "collection": os.path.join(root, spec.name, source, variant),
        "seed": 0, "untrained_models": False, "untrained": [], "shortfall": 0,
        "scores": {k: float(v) for k, v in scores.items()},
        "cost": _cost(source, max_shots * spec.num_classes),
        "eval_seconds": _eval_seconds(rng, scores, spec.test_size, n_train),
    }
    if mts is not None:
        rec["mts"] = mts
    return rec


def _quality(cler: float, rng: np.random.Generator) -> dict[str, float]:
    # the paper's finding: CLER tracks the linear probe closely, CLIP score and FID much less
    return {"linear_probe": min(99.0, cler + 3 + rng.normal(0, 3)), "clip_score": 24 + 0.05 * cler + rng.normal(0, 2.0),
            "fd_clip": max(0.05, 1.2 - 0.004 * cler + rng.normal(0, 0.2)),
            # Fig. 10: CLIP fine-tuned on the data, above CLER and tracking it
            "finetune": min(99.0, cler + 5 + rng.normal(0, 2))}


def synthetic_records(root: str) -> list[dict[str, Any]]:
    """The records; ``root`` is where their collections (would) live."""
    records = []
    for i, name in enumerate(DATASETS):
        spec = get_dataset(name)
        rng = np.random.default_rng(100 + i)
        mts = float(rng.uniform(0.55, 0.85))
        sd_dt = TABLE2[("SD", "dt")][i]
        # generated data helps most where the class names are common words (high MTS): the paper's Fig. 6
        zs = float(np.clip(sd_dt - (40 * (mts - 0.7) - 1 + rng.normal(0, 1.5)), 5, 95))
        for s in STRATEGIES:
            base = TABLE2[("SD", s)][i] if ("SD", s) in TABLE2 else sd_dt + rng.normal(0, 1.5)
            for k in (SHOTS if s == "dt" else (20,)):
                cler = base + rng.normal(0, 1.0) + (2.5 * math.log10(k / 20) if k != 20 else 0.0)
                scores = {"zeroshot": zs, "cler": cler, "cler_text": (cler + zs) / 2 + 2}
                if s == "dt":
                    scores |= _quality(cler, rng)
                records.append(_record(spec, "generated", s, k, CLIP, scores, rng, root, max(SHOTS) if s == "dt" else 20))
        for clip, shift in BACKBONES.items():
            cler = sd_dt + shift - 2.5 * math.log10(4) + rng.normal(0, 1.0)
            scores = {"zeroshot": zs + shift, "cler": cler, "cler_text": cler + 1} | _quality(cler, rng)
            records.append(_record(spec, "generated", "dt", 5, clip, scores, rng, root, max(SHOTS)))
        for source, lift, slope in (("retrieved", 4 + 10 * (mts - 0.7), 3.0), ("original", 7.0, 6.0)):
            for k in SHOTS:
                cler = min(99.0, zs + lift + slope * math.log10(k) + rng.normal(0, 0.8))
                scores = {"zeroshot": zs, "cler": cler, "cler_text": cler + 0.5} | _quality(cler, rng)
                records.append(_record(spec, source, None, k, CLIP, scores, rng, root, max(SHOTS),
                                       mts=mts if source == "retrieved" else None))
    return records


def _image(cls: int, col: int, size: int = 48) -> Image.Image:
    """A class-coloured tile with a per-strategy shape, so a grid's rows and columns are told apart at a glance."""
    hue = np.array(Image.new("HSV", (1, 1), (int(cls * 255 / 10) % 256, 170, 220)).convert("RGB")).reshape(3)
    img = Image.new("RGB", (size, size), tuple(int(c) for c in hue))
    d = ImageDraw.Draw(img)
    box = (10, 10, size - 10, size - 10)
    shape = col % 3
    if shape == 0:
        d.ellipse(box, fill=(255, 255, 255))
    elif shape == 1:
        d.rectangle(box, fill=(30, 30, 30))
    else:
        d.polygon([(size // 2, 8), (size - 8, size - 8), (8, size - 8)], fill=(250, 240, 120))
    return img


def write_collection(path: str, dataset: str, source: str, variant: str, num_classes: int, col: int) -> None:
    """One shard holding shot 0 of every class, and the manifest that lists it, with the project's own writers."""
    from genbench.shards.manifest import write_manifest
    from genbench.shards.schema import Sample, encode_image
    from genbench.shards.store import Store
    from genbench.shards.writer import write_tar

    store = Store(path)
    store.makedirs()
    samples = [Sample(c, 0, encode_image(_image(c, col)), "jpg", {"class_name": str(c)}) for c in range(num_classes)]
    size, digest = write_tar(store, "000000", samples)
    spec = {"dataset": dataset, "source": source, "variant": variant, "num_classes": num_classes, "shard_size": num_classes}
    write_manifest(store, spec, [{"shard": "000000", "tar": "000000.tar", "samples": len(samples), "bytes": size,
                                  "sha256": digest, "slot_start": 0, "slot_stop": num_classes}], {})


def write_synthetic(base: str, with_collections: bool = True) -> str:
    """results.json under ``base/run`` (returned) and, for GRID_DATASETS, their collections under ``base/shards``."""
    root = os.path.join(base, "shards")
    records = synthetic_records(root)
    if with_collections:
        done = set()
        for r in records:
            if r["dataset"] in GRID_DATASETS and r["collection"] not in done:
                done.add(r["collection"])
                col = STRATEGIES.index(r["strategy"]) if r["strategy"] else len(STRATEGIES) + (r["source"] == "original")
                write_collection(r["collection"], r["dataset"], r["source"], r["variant"],
                                 get_dataset(r["dataset"]).num_classes, col)
    run = os.path.join(base, "run")
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "results.json"), "w") as f:
        json.dump(records, f)
    return run
