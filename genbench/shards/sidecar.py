"""Embedding sidecars: ``emb/<clip-slug>/NNNNNN.parquet`` with columns key, cls, embedding (L2-normalised float32).

The file's schema metadata says what a reader outside genbench needs to trust the rows: under the key ``genbench``, a
JSON object with the model reference, the embedding dimension and that rows are unit vectors.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def sidecar_rel(clip_slug: str, shard: str) -> str:
    return f"emb/{clip_slug}/{shard}.parquet"


METADATA_KEY = b"genbench"


def to_parquet_bytes(keys: list[str], cls: np.ndarray, emb: np.ndarray, extra: dict[str, np.ndarray] | None = None,
                     model: dict[str, Any] | None = None) -> bytes:
    """The sidecar table; ``extra`` adds float32 columns (e.g. ``prompt_similarity``, the cosine to the sample's prompt);
    ``model`` (e.g. ``{"model": "ViT-B-32:openai"}``) goes into the schema metadata with the dimension."""
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    dim = emb.shape[1] if emb.ndim == 2 else 0
    flat = pa.array(emb.reshape(-1), type=pa.float32())
    columns = {
        "key": pa.array(keys, type=pa.string()),
        "cls": pa.array(np.asarray(cls, dtype=np.int32), type=pa.int32()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
    }
    for name, values in (extra or {}).items():
        columns[name] = pa.array(np.asarray(values, dtype=np.float32), type=pa.float32())
    meta = {**(model or {}), "dim": int(dim), "dtype": "float32", "normalized": "l2",
            "columns": {"key": "sample key (__key__ in the shard)", "cls": "label id (classes.json)",
                        "embedding": "unit-norm image embedding", **{n: "float32" for n in (extra or {})}}}
    table = pa.table(columns).replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
    buf = io.BytesIO()
    # Float embeddings barely compress, so a codec that is cheap to decode wins (see BENCHMARKS.md, scoring).
    pq.write_table(table, buf, compression="snappy")
    return buf.getvalue()


def sidecar_metadata(data: bytes) -> dict[str, Any]:
    """What a sidecar's schema metadata says of its rows (empty for a sidecar written before it was recorded)."""
    raw = (pq.read_schema(io.BytesIO(data)).metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def table_to_arrays(table: pa.Table) -> tuple[list[str], np.ndarray, np.ndarray]:
    keys = table.column("key").to_pylist()
    cls = table.column("cls").to_numpy().astype(np.int64)
    col = table.column("embedding").combine_chunks()
    dim = col.type.list_size
    emb = col.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)
    return keys, cls, emb


def read_parquet_bytes(data: bytes) -> tuple[list[str], np.ndarray, np.ndarray]:
    return table_to_arrays(pq.read_table(io.BytesIO(data)))


# Class sums are reduced in int64 fixed point (2^-32 resolution): the total then does not depend on the order in which
# shards arrive, so a first run, a resumed run and a rerun that skips everything give bit-identical centroids.
FIXED_SCALE = float(2**32)


def to_fixed(sums: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(sums, dtype=np.float64) * FIXED_SCALE).astype(np.int64)


def read_class_embeddings(data: bytes, max_shot: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cls, embedding) of a sidecar, only shots < ``max_shot`` when given; keys are read only to apply that filter."""
    columns = ["cls", "embedding"] + (["key"] if max_shot is not None else [])
    table = pq.read_table(io.BytesIO(data), columns=columns)
    col = table.column("embedding").combine_chunks()
    emb = col.values.to_numpy(zero_copy_only=False).reshape(-1, col.type.list_size)
    cls = table.column("cls").to_numpy().astype(np.int64)
    if max_shot is not None:
        from genbench.shards.schema import parse_key

        keep = np.array([parse_key(k)[1] < max_shot for k in table.column("key").to_pylist()], dtype=bool)
        cls, emb = cls[keep], emb[keep]
    return cls, emb


def class_sums(cls: np.ndarray, emb: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sums of (already normalised) embeddings, float64 (C, D), and counts (C,)."""
    import scipy.sparse as sp

    cls = np.asarray(cls, dtype=np.int64)
    # A sparse one-hot (C, N) times (N, D): O(N*D) without np.add.at's per-element loop; deterministic for a given input.
    onehot = sp.csr_matrix((np.ones(len(cls)), (cls, np.arange(len(cls)))), shape=(num_classes, len(cls)))
    sums = np.asarray(onehot @ emb.astype(np.float64))
    counts = np.bincount(cls, minlength=num_classes).astype(np.int64)
    return sums, counts
