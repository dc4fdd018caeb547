"""The real test split's CLIP embeddings, computed once per (dataset, split, CLIP model, preprocessing) and cached.

The cache key names everything the values depend on: dataset, split, the data's fingerprint, the CLIP reference and
its pretrained tag, the preprocessing, the normalisation and this module's format version. A stale entry can therefore
never be served (CLIP_benchmark's key omits the split). Arrays are .npy (loaded with allow_pickle=False).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHUNK = 512  # split images decoded and held at once


def read_images(split: Any, indices: range) -> list:
    """The split's images; one that cannot be read is fatal, naming its file: a score without it would be wrong."""
    from genbench.errors import UsageError

    out = []
    for i in indices:
        try:
            out.append(split.image(i))
        except Exception as exc:
            raise UsageError(f"{split.dataset} {split.split} split", split.ref(i),
                             f"readable images (this one: {type(exc).__name__}: {str(exc)[:120]})") from None
    return out


def embed_split_images(split: Any, clip: Any, n: int | None = None) -> np.ndarray:
    """(n, D) unit rows: the first ``n`` (default all) images of ``split`` through ``clip``, :data:`CHUNK` at a time."""
    n = len(split) if n is None else n
    parts = [clip.encode_images(read_images(split, range(s, min(s + CHUNK, n)))) for s in range(0, n, CHUNK)]
    return np.concatenate(parts) if parts else np.zeros((0, clip.dim), np.float32)


def resolve_cache_dir(cache_dir: str | None) -> str:
    """The configured cache directory, absolute, else the models' default ($GENBENCH_CACHE or ~/.cache/genbench)."""
    from genbench.models.cache import default_cache_dir

    return os.path.abspath(cache_dir) if cache_dir else default_cache_dir()


def cache_key(dataset: str, split: str, fingerprint: str, clip_ref: str, preprocess_id: str, normalisation: str = "l2",
              clip_slug: str | None = None) -> dict[str, Any]:
    """What a cached split embedding depends on. ``clip_slug`` names the exact weights where one reference has had
    several (the toy CLIP's slug carries its recipe key), as the collections' sidecar directories do."""
    return {
        "dataset": dataset,
        "split": split,
        "data_fingerprint": fingerprint,
        "clip": clip_ref,
        "clip_slug": clip_slug or clip_ref,
        "preprocess": preprocess_id,
        "normalisation": normalisation,
        "format": FORMAT_VERSION,
    }


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def cached_embeddings(cache_dir: str, key: dict[str, Any], compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
    """Return (embeddings, was_cached); computes and stores them on a miss (atomically, so racing drivers are safe)."""
    directory = os.path.join(cache_dir, "embeddings")
    digest = key_digest(key)
    path = os.path.join(directory, f"{key['dataset']}-{key['split']}-{digest}.npy")
    meta_path = path[:-4] + ".json"
    if os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            if json.load(f) == key:
                return np.load(path, allow_pickle=False), True
    emb = np.ascontiguousarray(compute(), dtype=np.float32)
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npy"
    np.save(tmp, emb, allow_pickle=False)
    os.replace(tmp, path)
    with open(meta_path + f".{os.getpid()}.tmp", "w", encoding="utf-8") as f:
        json.dump(key, f, sort_keys=True)
    os.replace(meta_path + f".{os.getpid()}.tmp", meta_path)
    log.info("cached %s embeddings of %s/%s at %s", emb.shape, key["dataset"], key["split"], path)
    return emb, False
