"""Scoring a collection directory on its own (``genbench score``/``embed``), in-process, from its sidecars."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from genbench.catalog import get_dataset
from genbench.engine import experiment as exp
from genbench.errors import UsageError
from genbench.shards import manifest as mf
from genbench.shards.schema import decode_image
from genbench.shards.reader import sidecar_class_sums
from genbench.shards.sidecar import sidecar_rel, to_parquet_bytes
from genbench.shards.store import Store

log = logging.getLogger(__name__)


def embed_collection(uri: str, clip_ref: str, cache_dir: str | None = None, clip: Any = None) -> int:
    """Write the sidecars ``emb/<slug>/`` that a collection lacks for ``clip_ref``; returns how many were written."""
    import webdataset as wds

    from genbench.models.clip import load_clip

    store = Store(uri)
    man = mf.read_manifest(store, "--collection")
    clip = clip or load_clip(clip_ref, cache_dir=cache_dir)
    written = 0
    for shard in man["shards"]:
        name = shard["tar"][: -len(".tar")]
        if store.exists(sidecar_rel(clip.slug, name)):
            continue
        keys, cls, images = [], [], []
        for sample in wds.WebDataset(store.url(shard["tar"]), shardshuffle=False, empty_check=False):
            ext = next((e for e in ("jpg", "png", "webp") if e in sample), None)
            if ext is None:
                raise UsageError("--collection", uri, f"shards whose samples hold an image (sample {sample['__key__']} has none)")
            keys.append(sample["__key__"])
            cls.append(int(sample["cls"]))
            images.append(decode_image(sample[ext]))
        emb = clip.encode_images(images) if images else np.zeros((0, clip.dim), np.float32)
        store.write_bytes(sidecar_rel(clip.slug, name), to_parquet_bytes(keys, np.array(cls), emb))
        written += 1
    return written


def embed_split_to_parquet(dataset: str, split: str, clip_ref: str, out: str, data_root: str | None, cache_dir: str | None) -> int:
    """The real split's embeddings as parquet (index, cls, embedding): the very values scoring uses (same cache)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genbench.models.clip import load_clip

    if os.path.isdir(out):
        raise UsageError("--out", out, "a file path ending in .parquet (this is a directory)")
    clip = load_clip(clip_ref, device="cpu", cache_dir=cache_dir)
    emb, labels = exp.split_embeddings(
        dataset, split, clip, clip_ref, data_root, exp.resolve_cache_dir(cache_dir), exp.split_embedder(clip_ref, data_root, cache_dir, clip=clip)
    )
    cls_col = pa.array(labels.tolist()) if labels.ndim == 2 else pa.array(labels.astype(np.int32), type=pa.int32())
    table = pa.table(
        {
            "index": pa.array(np.arange(len(emb), dtype=np.int64)),
            "cls": cls_col,
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), type=pa.float32()), emb.shape[1]),
        }
    )
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, out)
    return len(emb)


def score_collection_dir(
    uri: str,
    dataset: str,
    clip_ref: str,
    shots: int | None = None,
    metrics: list[str] | None = None,
    data_root: str | None = None,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """One results record for the collection at ``uri`` (its first ``shots`` shots if given)."""
    from genbench.config import DEFAULT_METRICS, SCORE_METRICS
    from genbench.metrics.zeroshot import class_text_embeddings
    from genbench.models.clip import load_clip

    spec = get_dataset(dataset)
    metrics = tuple(metrics or DEFAULT_METRICS)
    for m in metrics:
        if m not in SCORE_METRICS:
            raise UsageError("--metrics", m, SCORE_METRICS)
    store = Store(uri)
    man = mf.read_manifest(store)
    if man["spec"].get("dataset") != dataset:
        raise UsageError("--dataset", dataset, f"the collection's own dataset {man['spec'].get('dataset')!r}")
    clip = load_clip(clip_ref, device="cpu", cache_dir=cache_dir)
    if any(not store.exists(sidecar_rel(clip.slug, s["tar"][:-4])) for s in man["shards"]):
        embed_collection(uri, clip_ref, cache_dir, clip=clip)
    shards = [(s["tar"][: -len(".tar")], int(s["slot_stop"])) for s in man["shards"]]
    sums, counts = sidecar_class_sums(store, shards, clip.slug, spec.num_classes, shots)
    test_emb, labels = exp.split_embeddings(
        dataset, "test", clip, clip_ref, data_root, exp.resolve_cache_dir(cache_dir), exp.split_embedder(clip_ref, data_root, cache_dir, clip=clip)
    )
    text_emb = class_text_embeddings(clip, spec.classes, spec.templates)
    from genbench.shards.reader import read_external

    names = [s["tar"][: -len(".tar")] for s in man["shards"]]
    scores = exp.score_collection(
        spec, metrics, sums, counts, test_emb, labels, text_emb,
        lambda: read_external(store, names, clip.slug, shots), int(man["spec"].get("run_seed") or 0),
    )
    opts = man["spec"].get("options", {})
    cost = man.get("cost", {})
    return {
        "dataset": dataset,
        "group": spec.group,
        "source": man["spec"].get("source"),
        "generator": opts.get("generator"),
        "strategy": opts.get("strategy"),
        "shots": shots or man["spec"].get("shots"),
        "clip": clip_ref,
        "metric": spec.metric,
        "n_train": int(counts.sum()),
        "n_test": len(labels),
        "variant": man["spec"].get("variant"),
        "collection": uri,
        "seed": man["spec"].get("run_seed"),
        "tiny_models": exp.is_tiny(clip_ref) or exp.is_tiny(opts.get("generator")),
        "scores": scores,
        "cost": {k: cost.get(k) for k in ("device", "device_seconds", "gpu_seconds", "usd_per_image")},
    }
