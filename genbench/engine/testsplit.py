"""The real split's CLIP embeddings for scoring: from the cache (:mod:`genbench.embeddings`), else computed in fixed
chunks on the worker pool, or in-process with an already loaded encoder. The chunks are the same either way, so are
the batches the model sees."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from genbench.catalog import get_dataset
from genbench.catalog.loaders import load_split
from genbench.embeddings import CHUNK, cache_key, cached_embeddings, embed_split_images, resolve_cache_dir
from genbench.errors import ShardFailures, UsageError

log = logging.getLogger(__name__)


def _compute(dataset: str, split_name: str, n: int, clip: Any, clip_ref: str, data_root: str | None,
             cache_dir: str | None, pool: Any) -> np.ndarray:
    if pool is None:
        return embed_split_images(load_split(get_dataset(dataset), split_name, data_root), clip, n)
    starts = list(range(0, n, CHUNK))
    done: dict[int, np.ndarray] = {}
    items = [(f"{dataset}/{split_name}/{s}", (dataset, split_name, s, min(s + CHUNK, n), clip_ref, data_root, cache_dir))
             for s in starts]
    outcome = pool.map("embed_split", items, lambda lbl, v: done.__setitem__(int(lbl.rsplit("/", 1)[1]), v))
    for cause in outcome.causes.values():
        raise cause  # a test image that cannot be read: one line naming it, exit 2
    if outcome.failed:
        raise ShardFailures(outcome.failed)
    return np.concatenate([done[s] for s in starts])


def check_split_size(dataset: Any, split: Any, accept_subset: bool, field: str) -> None:
    """A test split must hold the catalog's number of images, unless the run says it is a known subset."""
    n = len(split)
    if n != dataset.test_size and not accept_subset:
        raise UsageError(f"{dataset.name} test split", f"{n} images",
                         f"the catalog's {dataset.test_size} images ({field} accepts a documented subset)")
    labels = split.labels
    if labels.ndim == 2:  # multi-label: one 0/1 column per class
        if labels.shape[1] != dataset.num_classes:
            raise UsageError(f"{dataset.name} test split", f"{labels.shape[1]} label columns",
                             f"the catalog's {dataset.num_classes} classes")
    elif n and (labels.min() < 0 or labels.max() >= dataset.num_classes):
        raise UsageError(f"{dataset.name} test split", f"labels {int(labels.min())}..{int(labels.max())}",
                         f"class indices 0..{dataset.num_classes - 1}")


def split_embeddings(dataset: str, split_name: str, clip: Any, clip_ref: str, data_root: str | None,
                     cache_dir: str | None, pool: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, labels) of a real split, cached under a key that names everything the values depend on."""
    split = load_split(get_dataset(dataset), split_name, data_root)
    key = cache_key(dataset, split_name, split.fingerprint, clip_ref, clip.preprocess_id, clip_slug=clip.slug)
    emb, hit = cached_embeddings(
        resolve_cache_dir(cache_dir), key, lambda: _compute(dataset, split_name, len(split), clip, clip_ref, data_root, cache_dir, pool))
    log.info("%s %s embeddings %s (%s)", dataset, split_name, emb.shape, "cached" if hit else "computed")
    return emb, split.labels
