"""Reading a collection's embeddings back from its sidecars, for scores that need more than class sums."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from genbench.shards.schema import parse_key
from genbench.shards.sidecar import sidecar_rel, table_to_arrays
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
