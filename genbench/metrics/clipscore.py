"""CLIP score of generated data: 100 x the mean cosine similarity between each image's embedding and the embedding of the
prompt that produced it (row i of ``image_emb`` pairs with row i of ``text_emb``)."""

from __future__ import annotations

import numpy as np

from genbench.errors import UsageError


def clip_score(image_emb: np.ndarray, text_emb: np.ndarray) -> float:
    """Row-wise pairs; both are re-normalised, so raw (unnormalised) embeddings give the same result."""
    a = np.asarray(image_emb, dtype=np.float64)
    b = np.asarray(text_emb, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or len(a) == 0:
        raise UsageError("text_emb", f"shape {b.shape} for images {a.shape}", "one (N, D) text embedding per image, N > 0")
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.sum(a * b, axis=1)) * 100.0)
