"""The real split's CLIP embeddings for scoring: from the cache (:mod:`genbench.embeddings`), else computed in fixed
chunks on the worker pool, or in-process with an already loaded encoder. The chunks are the same either way, so are
the batches the model sees."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from genbench.catalog import get_dataset
from genbench.catalog.loaders import load_split
from genbench.embeddings import cache_key, cached_embeddings, resolve_cache_dir
from genbench.errors import ShardFailures

log = logging.getLogger(__name__)

CHUNK = 512


def _compute(dataset: str, split_name: str, n: int, clip: Any, clip_ref: str, data_root: str | None,
             cache_dir: str | None, pool: Any) -> np.ndarray:
    starts = list(range(0, n, CHUNK))
    if pool is None:
        split = load_split(get_dataset(dataset), split_name, data_root)
        parts = [clip.encode_images([split.image(i) for i in range(s, min(s + CHUNK, n))]) for s in starts]
        return np.concatenate(parts) if parts else np.zeros((0, clip.dim), np.float32)
    done: dict[int, np.ndarray] = {}
    items = [(f"{dataset}/{split_name}/{s}", (dataset, split_name, s, min(s + CHUNK, n), clip_ref, data_root, cache_dir))
             for s in starts]
    outcome = pool.map("embed_split", items, lambda lbl, v: done.__setitem__(int(lbl.rsplit("/", 1)[1]), v))
    if outcome.failed:
        raise ShardFailures(outcome.failed)
    return np.concatenate([done[s] for s in starts])


def split_embeddings(dataset: str, split_name: str, clip: Any, clip_ref: str, data_root: str | None,
                     cache_dir: str | None, pool: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, labels) of a real split, cached under a key that names everything the values depend on."""
    split = load_split(get_dataset(dataset), split_name, data_root)
    key = cache_key(dataset, split_name, split.fingerprint, clip_ref, clip.preprocess_id)
    emb, hit = cached_embeddings(
        resolve_cache_dir(cache_dir), key, lambda: _compute(dataset, split_name, len(split), clip, clip_ref, data_root, cache_dir, pool))
    log.info("%s %s embeddings %s (%s)", dataset, split_name, emb.shape, "cached" if hit else "computed")
    return emb, split.labels
