"""Reading a collection back: embeddings and class sums from its sidecars, samples and images from its tars."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq

from genbench.shards.schema import IMAGE_FORMATS, Sample, decode_image, parse_key
from genbench.shards.sidecar import FIXED_SCALE, class_sums, read_class_embeddings, sidecar_rel, table_to_arrays, to_fixed
from genbench.shards.store import Store


@dataclass
class External:
    """The external data's embeddings (N, D), classes (N,) and, for generated data, each image's cosine to its prompt."""

    cls: np.ndarray
    emb: np.ndarray
    prompt_similarity: np.ndarray | None


def read_external(store: Store, shard_names: list[str], clip_slug: str, shots: int | None = None) -> External:
    """Concatenate the sidecars of ``shard_names`` (only shots < ``shots`` when given), in shard order."""
    cls_parts, emb_parts, sim_parts = [], [], []
    has_sim = True
    for name in shard_names:
        table = pq.read_table(io.BytesIO(store.read_bytes(sidecar_rel(clip_slug, name))))
        keys, cls, emb = table_to_arrays(table)
        sim = table.column("prompt_similarity").to_numpy() if "prompt_similarity" in table.column_names else None
        if shots is not None:
            keep = np.array([parse_key(k)[1] < shots for k in keys], dtype=bool)
            cls, emb = cls[keep], emb[keep]
            sim = sim[keep] if sim is not None else None
        cls_parts.append(cls)
        emb_parts.append(emb)
        has_sim = has_sim and sim is not None
        if sim is not None:
            sim_parts.append(sim)
    if not emb_parts:
        return External(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), None)
    return External(
        np.concatenate(cls_parts),
        np.concatenate(emb_parts),
        np.concatenate(sim_parts) if has_sim and sim_parts else None,
    )


def sidecar_class_sums(
    store: Store, shards: list[tuple[str, int]], clip_slug: str, num_classes: int, shots: int | None = None,
    fixed: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sums and counts over sidecars, reduced in int64 fixed point so the total does not depend on order:
    float64 (C, D) sums, or the fixed-point int64 ones themselves with ``fixed``.

    ``shards`` is [(name, slot_stop)] in order; with ``shots``, shards wholly past the prefix are skipped and only the
    one that straddles it is filtered by key.
    """
    total: np.ndarray | None = None
    counts = np.zeros(num_classes, dtype=np.int64)
    limit = None if shots is None else shots * num_classes
    for name, slot_stop in shards:
        straddles = limit is not None and slot_stop > limit
        cls, emb = read_class_embeddings(store.read_bytes(sidecar_rel(clip_slug, name)), shots if straddles else None)
        if len(cls):
            s, c = class_sums(cls, emb, num_classes)
            total = to_fixed(s) if total is None else total + to_fixed(s)
            counts += c
        if straddles:
            break  # shards are in shot-major order: nothing after the straddling shard is in the prefix
    if total is None:
        return np.zeros((num_classes, 1), dtype=np.int64 if fixed else np.float64), counts
    return (total, counts) if fixed else (total.astype(np.float64) / FIXED_SCALE, counts)


def read_samples(store: Store, shard: str) -> list[Sample]:
    """The samples of ``shard``.tar as written (image bytes untouched), parsed by webdataset's tar iterators from the
    store's own file object (so any fsspec filesystem works)."""
    return list(_samples(store, shard))


def read_selected(store: Store, shard: str, keys: set[str]) -> dict[str, Sample]:
    """The samples of ``shard``.tar whose keys are in ``keys``, by key: the tar is streamed once and only those are
    kept (what RA reads of a retrieved shard)."""
    return {s.key: s for s in _samples(store, shard) if s.key in keys}


def _samples(store: Store, shard: str) -> Iterator[Sample]:
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    with store.open(f"{shard}.tar") as f:
        for s in group_by_keys({**item, "__url__": shard} for item in tar_file_iterator(f)):
            ext = next((e for e in IMAGE_FORMATS if e in s), None)
            if ext is None:
                raise ValueError(f"{store.url(shard + '.tar')}: sample {s['__key__']} holds no image")
            cls, shot = parse_key(s["__key__"])
            meta = ({k: v for k, v in json.loads(s["json"]).items() if k not in ("key", "cls", "shot")}
                    if "json" in s else {})
            txt = s["txt"].decode("utf-8", errors="replace") if isinstance(s.get("txt"), bytes) else None
            yield Sample(cls, shot, s[ext], ext, meta, txt)


def iter_images(store: Store, shards: list[str], shots: int | None = None) -> Iterator:
    """Decoded RGB images of ``shards`` in order (only shots < ``shots`` when given), one at a time."""
    for shard in shards:
        for sample in read_samples(store, shard):
            if shots is None or sample.shot < shots:
                yield decode_image(sample.image)
