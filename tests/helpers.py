"""Small helpers shared by tests (not fixtures)."""

from __future__ import annotations

import hashlib
import os


def sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tars(collection: str) -> list[str]:
    return sorted(os.path.join(collection, f) for f in os.listdir(collection) if f.endswith(".tar"))


def snapshot(collection: str) -> dict[str, tuple[str, int]]:
    """name -> (sha256, mtime_ns) of every tar and stats record in a collection."""
    out = {}
    for path in tars(collection):
        out[os.path.basename(path)] = (sha(path), os.stat(path).st_mtime_ns)
    stats = os.path.join(collection, "stats")
    for name in sorted(os.listdir(stats)) if os.path.isdir(stats) else []:
        p = os.path.join(stats, name)
        out["stats/" + name] = (sha(p), os.stat(p).st_mtime_ns)
    return out


def write_captions(path: str, base: str, paths: list[str], captions: list[str], vectors: list) -> None:
    """A caption shard as `genbench index build` reads it: each image path served under ``base``, its caption, and
    its text embedding (normalised here)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    emb = np.asarray(vectors, dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    table = pa.table({"url": [base + p for p in paths], "caption": captions,
                      "text_embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])})
    pq.write_table(table, path)
