"""Committing one shard in the order DESIGN.md fixes: tar (temp, fsync, rename) -> embedding sidecar (and its class
sums, :mod:`genbench.shards.classsums`) -> stats record.

A shard is done only when its stats record exists and the tar's size and sha256 match it; readers and reruns trust
nothing else. Tars are written with a fixed mtime and sorted members, so the same samples give byte-identical files.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from genbench.shards.classsums import RECORD_KEY, write_shard_sums
from genbench.shards.layout import shard_name
from genbench.shards.schema import Sample
from genbench.shards.sidecar import sidecar_rel, to_parquet_bytes
from genbench.shards.store import Store

TAR_MTIME = 946684800.0  # 2000-01-01T00:00:00Z: fixed so identical inputs give identical bytes


def json_bytes(obj: Any, indent: int | None = None) -> bytes:
    from genbench.shards.manifest import json_bytes as strict

    return strict(obj, indent)


def stats_rel(shard: str) -> str:
    return f"stats/{shard}.json"


def write_tar(store: Store, shard: str, samples: list[Sample]) -> tuple[int, str]:
    """Write ``shard.tar`` atomically; returns (bytes, sha256)."""
    import webdataset as wds  # here: importing webdataset imports torch, which a driver before Ray does not need

    rel = f"{shard}.tar"
    tmp = store.temp_file(rel)
    try:
        with open(tmp, "wb") as f:
            sink = wds.TarWriter(f, mtime=TAR_MTIME, user="genbench", group="genbench", encoder=False)
            for sample in samples:
                sink.write(sample.to_wds())
            sink.close()
            f.flush()
            os.fsync(f.fileno())
        h = hashlib.sha256()
        with open(tmp, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        size = os.path.getsize(tmp)
        store.put_file(tmp, rel)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return size, h.hexdigest()


def write_sidecars(store: Store, shard: str, samples: list[Sample], embeddings: dict[str, np.ndarray],
                   extra_columns: dict[str, dict[str, np.ndarray]] | None,
                   num_classes: int | None = None, models: dict[str, dict[str, Any]] | None = None,
                   ) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, ...]]]:
    """One sidecar and one class-sums file per CLIP slug; returns (what the shard's record lists of them: each
    sidecar's size and each sums file's size and sha256, {slug: (class ids, counts, fixed-point sums)})."""
    keys = [s.key for s in samples]
    cls = np.array([s.cls for s in samples], dtype=np.int32)
    sizes, listed, arrays = {}, {}, {}
    for slug, emb in embeddings.items():
        extra = (extra_columns or {}).get(slug)
        data = to_parquet_bytes(keys, cls, emb, extra, (models or {}).get(slug))
        store.write_bytes(sidecar_rel(slug, shard), data)
        sizes[slug] = len(data)
        listed[slug], arrays[slug] = write_shard_sums(store, shard, slug, cls, emb, num_classes)
    return {"sidecar_bytes": sizes, RECORD_KEY: listed}, arrays


def _merged(record: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """``record`` with the per-slug entries of ``fields`` added to its own (a slug added later keeps the others)."""
    return {**record, **{k: {**(record.get(k) or {}), **v} for k, v in fields.items()}}


def commit_shard(
    store: Store,
    shard_id: int,
    samples: list[Sample],
    embeddings: dict[str, np.ndarray],
    record: dict[str, Any],
    extra_columns: dict[str, dict[str, np.ndarray]] | None = None,
    num_classes: int | None = None,
    models: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, ...]]]:
    """Write tar, then per CLIP slug in ``embeddings`` (rows aligned with ``samples``) its sidecar and class sums, then
    the record; returns (the record, the class sums by slug). ``models`` says per slug which model made the sidecar."""
    shard = shard_name(shard_id)
    size, digest = write_tar(store, shard, samples)
    fields, sums = write_sidecars(store, shard, samples, embeddings, extra_columns, num_classes, models)
    keys = [s.key for s in samples]
    record = {
        **_merged(record, fields),
        "shard": shard,
        "tar": f"{shard}.tar",
        "samples": len(samples),
        "bytes": size,
        "sha256": digest,
        "keys_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
        "embeddings": sorted(embeddings),
    }
    store.write_bytes(stats_rel(shard), json_bytes(record, indent=None))
    return record, sums


def commit_sidecars(
    store: Store,
    record: dict[str, Any],
    samples: list[Sample],
    embeddings: dict[str, np.ndarray],
    extra_columns: dict[str, dict[str, np.ndarray]] | None = None,
    num_classes: int | None = None,
    models: dict[str, dict[str, Any]] | None = None,
    **changes: Any,
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, ...]]]:
    """Add sidecars (and class sums) to a committed shard whose tar stays as it is (a CLIP model added later): those
    first, then the record rewritten with them listed (and ``changes``); returns (the record, the sums by slug)."""
    shard = record["shard"]
    fields, sums = write_sidecars(store, shard, samples, embeddings, extra_columns, num_classes, models)
    record = {**_merged(record, fields), **changes,
              "embeddings": sorted(set(record.get("embeddings", [])) | set(embeddings))}
    store.write_bytes(stats_rel(shard), json_bytes(record, indent=None))
    return record, sums
