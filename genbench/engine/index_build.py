"""`genbench index build` on the cluster: caption embeddings on Ray actors (unless precomputed), then the faiss index
(:mod:`genbench.retrieval.build`, Ray-free)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import ray

from genbench.sources.resources import Resources


class _TextEncoder:
    """Actor body: one CLIP text encoder per worker (GPU where present)."""

    def __init__(self, clip_ref: str, cache_dir: str | None) -> None:
        self.clip = Resources().clip(clip_ref, cache_dir)

    def encode(self, batch: list[str]) -> np.ndarray:
        return self.clip.encode_texts(batch)


class _PoolEncoder:
    """Looks like a CLIP encoder to build_index, but embeds captions on Ray actors (started once, reused)."""

    def __init__(self, clip: Any, workers: int, cache_dir: str | None, chunk: int = 1024):
        self.ref, self.slug, self.dim = clip.ref, clip.slug, clip.dim
        gpus = float(ray.cluster_resources().get("GPU", 0))
        actor = ray.remote(num_cpus=1, num_gpus=1 if gpus >= 1 else 0)(_TextEncoder)
        self._actors = [actor.remote(clip.ref, cache_dir) for _ in range(max(1, workers))]
        self._chunk = chunk

    def encode_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        texts = list(texts)
        starts = range(0, len(texts), self._chunk)
        refs = [self._actors[i % len(self._actors)].encode.remote(texts[s : s + self._chunk]) for i, s in enumerate(starts)]
        return np.concatenate(ray.get(refs)) if refs else np.zeros((0, self.dim), np.float32)

    def close(self) -> None:
        for a in self._actors:
            ray.kill(a)


def build_caption_index(captions: str, clip_ref: str, out: str, *, factory: str | None = None,
                        memory_budget: int | None = None, recall_target: float = 0.95,
                        embedding_column: str | None = None, workers: int = 2,
                        address: str | None = None, cache_dir: str | None = None,
                        storage_options: dict | None = None) -> dict[str, Any]:
    """Caption embeddings on Ray workers (unless precomputed), then a faiss index in ``out`` (fsspec, with
    ``storage_options``)."""
    from genbench.engine.dispatch import init_ray
    from genbench.retrieval.build import build_index

    clip = Resources(device="cpu").clip(clip_ref, cache_dir)
    encoder: Any = clip
    if embedding_column is None:
        init_ray(address)
        encoder = _PoolEncoder(clip, workers, cache_dir)
    try:
        info = build_index(captions, encoder, out, factory=factory, memory_budget_bytes=memory_budget,
                           recall_target=recall_target, embedding_column=embedding_column, clip_ref=clip_ref, storage_options=storage_options)
    finally:
        if isinstance(encoder, _PoolEncoder):
            encoder.close()
    return asdict(info)
