"""Per-class embedding sums kept beside the shards, so centroid scores and resumed runs never re-read embeddings.

A worker that embeds a shard already has its per-class sums; it commits them next to the sidecar as
``sums/<clip-slug>/NNNNNN.npz`` (class ids present, their counts, and the sums in int64 fixed point at 2^-32, the
same exact arithmetic the driver reduces in), before the shard's record, which lists the file's size and sha256. When
a run writes a collection's manifest it also writes the collection's totals, ``sums/<clip-slug>.npz``, and the
manifest names the shards they cover. CLER, CLER+text, a resumed run and prefix scoring then read
O(shards x classes x dim) numbers, or one (classes x dim) file, instead of every embedding; a prefix that ends inside a
shard reads that one shard's sidecar, filtered by key. Sidecars stay the source of truth for the probe and Fréchet
distance, and for shards an older genbench committed without sums.

Files are ``.npz`` read with ``allow_pickle=False``, checked against the sha256 their record states, and checked for
shape and range before use: a damaged file falls back to the sidecar, never to a wrong centroid.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from typing import Any

import numpy as np

from genbench.shards.sidecar import FIXED_SCALE, class_sums, read_class_embeddings, sidecar_rel, to_fixed
from genbench.shards.store import Store

log = logging.getLogger(__name__)

RECORD_KEY = "class_sums"  # in a shard record / manifest entry: {clip_slug: {"bytes": n, "sha256": hex}}


def shard_sums_rel(clip_slug: str, shard: str) -> str:
    return f"sums/{clip_slug}/{shard}.npz"


def totals_rel(clip_slug: str) -> str:
    return f"sums/{clip_slug}.npz"


def fixed_class_sums(cls: np.ndarray, emb: np.ndarray, num_classes: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class ids present, their counts, their sums in int64 fixed point) of one shard's normalised embeddings."""
    cls = np.asarray(cls, dtype=np.int64)
    n = int(num_classes) if num_classes is not None else (int(cls.max()) + 1 if len(cls) else 1)
    sums, counts = class_sums(cls, emb, n)
    present = np.flatnonzero(counts)
    return present.astype(np.int64), counts[present], to_fixed(sums[present])


def encode(class_ids: np.ndarray, counts: np.ndarray, fixed: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, class_ids=np.asarray(class_ids, dtype=np.int64), counts=np.asarray(counts, dtype=np.int64),
             fixed=np.asarray(fixed, dtype=np.int64))
    return buf.getvalue()


def decode(data: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class ids, counts, fixed sums) of an ``.npz`` written by :func:`encode`; ValueError if it is anything else."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        if set(z.files) != {"class_ids", "counts", "fixed"}:
            raise ValueError(f"arrays {sorted(z.files)}, not class_ids, counts, fixed")
        ids, counts, fixed = z["class_ids"], z["counts"], z["fixed"]
    if ids.dtype != np.int64 or counts.dtype != np.int64 or fixed.dtype != np.int64:
        raise ValueError("arrays that are not int64")
    if ids.ndim != 1 or counts.shape != ids.shape or fixed.ndim != 2 or fixed.shape[0] != len(ids):
        raise ValueError(f"shapes {ids.shape}, {counts.shape}, {fixed.shape} that do not agree")
    if len(ids) and (ids.min() < 0 or ids.max() >= num_classes or len(np.unique(ids)) != len(ids)):
        raise ValueError(f"class ids outside 0..{num_classes - 1} or repeated")
    if len(counts) and counts.min() < 0:
        raise ValueError("negative counts")
    return ids, counts, fixed


def write_shard_sums(store: Store, shard: str, clip_slug: str, cls: np.ndarray, emb: np.ndarray,
                     num_classes: int | None = None) -> tuple[dict[str, Any], tuple[np.ndarray, ...]]:
    """Commit one shard's sums file; returns (its record entry, (class ids, counts, fixed sums))."""
    arrays = fixed_class_sums(cls, emb, num_classes)
    data = encode(*arrays)
    store.write_bytes(shard_sums_rel(clip_slug, shard), data)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, arrays


def _entry(record: dict[str, Any] | None, clip_slug: str) -> dict[str, Any] | None:
    entry = ((record or {}).get(RECORD_KEY) or {}).get(clip_slug)
    ok = isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str)
    return entry if ok else None


def read_shard_sums(store: Store, shard: str, clip_slug: str, record: dict[str, Any] | None,
                    num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A shard's persisted sums, or None when its record lists none or the file is not the one it lists."""
    entry = _entry(record, clip_slug)
    if entry is None:
        return None
    rel = shard_sums_rel(clip_slug, shard)
    try:
        data = store.read_bytes(rel)
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ValueError("size or sha256 differs from its record")
        return decode(data, num_classes)
    except (OSError, ValueError) as exc:
        log.warning("%s: class sums unusable (%s); reading the sidecar instead", store.url(rel), exc)
        return None


def collection_sums(store: Store, shards: list[tuple[str, int, dict[str, Any] | None]], clip_slug: str,
                    num_classes: int, shots: int | None = None, fixed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sums and counts over ``shards`` [(name, slot_stop, record)] in shard order (only shots < ``shots``
    when given): float64 (C, D), or the int64 fixed-point sums with ``fixed``. Whole shards are read from their sums
    files; a shard that straddles the prefix, or one without usable sums, from its sidecar."""
    total: np.ndarray | None = None
    counts = np.zeros(num_classes, dtype=np.int64)
    limit = None if shots is None else shots * num_classes
    for name, slot_stop, record in shards:
        straddles = limit is not None and slot_stop > limit
        got = None if straddles else read_shard_sums(store, name, clip_slug, record, num_classes)
        if got is None:
            cls, emb = read_class_embeddings(store.read_bytes(sidecar_rel(clip_slug, name)), shots if straddles else None)
            got = fixed_class_sums(cls, emb, num_classes) if len(cls) else None
        if got is not None and len(got[0]):
            ids, c, f = got
            if total is None:
                total = np.zeros((num_classes, f.shape[1]), dtype=np.int64)
            elif f.shape[1] != total.shape[1]:
                raise ValueError(f"{store.url(name)}: class sums of dimension {f.shape[1]}, not {total.shape[1]}")
            total[ids] += f
            counts[ids] += c
        if straddles:
            break  # shards are in shot-major order: nothing after the straddling shard is in the prefix
    if total is None:
        return np.zeros((num_classes, 1), dtype=np.int64 if fixed else np.float64), counts
    return (total, counts) if fixed else (total.astype(np.float64) / FIXED_SCALE, counts)


def coverage(records: list[dict[str, Any]], clip_slug: str) -> str:
    """What a totals file sums over: each shard's name, tar digest and sums digest, as one sha256."""
    items = [[r.get("shard") or str(r.get("tar", ""))[: -len(".tar")], r.get("sha256"),
              (_entry(r, clip_slug) or {}).get("sha256")] for r in records]
    return hashlib.sha256(json.dumps(sorted(items), separators=(",", ":")).encode()).hexdigest()


def write_totals(store: Store, clip_slug: str, records: list[dict[str, Any]], fixed: np.ndarray,
                 counts: np.ndarray) -> dict[str, Any]:
    """Commit the collection's totals over ``records``; returns the manifest's entry for them."""
    ids = np.flatnonzero(counts)
    data = encode(ids, counts[ids], fixed[ids])
    rel = totals_rel(clip_slug)
    if store.size(rel) != len(data) or store.read_bytes(rel) != data:  # a rerun that made nothing rewrites nothing
        store.write_bytes(rel, data)
    return {"file": totals_rel(clip_slug), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "coverage": coverage(records, clip_slug)}


def read_totals(store: Store, manifest: dict[str, Any], entries: list[dict[str, Any]], clip_slug: str,
                num_classes: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The float64 (C, D) sums and counts of the collection's totals file if it covers exactly ``entries`` (the
    manifest's shards being scored), else None."""
    entry = ((manifest.get(RECORD_KEY) or {}) if isinstance(manifest, dict) else {}).get(clip_slug)
    if not isinstance(entry, dict) or entry.get("coverage") != coverage(entries, clip_slug):
        return None
    try:
        data = store.read_bytes(totals_rel(clip_slug))
        if len(data) != entry.get("bytes") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise ValueError("size or sha256 differs from the manifest")
        ids, c, f = decode(data, num_classes)
    except (OSError, ValueError) as exc:
        log.warning("%s: collection class sums unusable (%s); summing the shards instead",
                    store.url(totals_rel(clip_slug)), exc)
        return None
    sums = np.zeros((num_classes, f.shape[1] if f.ndim == 2 and len(ids) else 1), dtype=np.int64)
    counts = np.zeros(num_classes, dtype=np.int64)
    sums[ids], counts[ids] = f, c
    return sums.astype(np.float64) / FIXED_SCALE, counts
