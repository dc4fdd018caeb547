"""CLIP score of generated data: 100 x the mean cosine similarity between each image's embedding and the embedding of
the prompt that produced it.

Workers compute each image's similarity to its own prompt while both are at hand (:func:`prompt_similarity`) and
store it in the sidecar column :data:`PROMPT_SIMILARITY`; the score is then a mean over sidecar rows, with no second
pass over images or prompts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genbench.errors import UsageError
from genbench.vectors import normalise

PROMPT_SIMILARITY = "prompt_similarity"


def prompt_similarity(clip: Any, image_emb: np.ndarray, prompts: list[str | None]) -> np.ndarray | None:
    """Per image, the cosine of its (unit) embedding to its prompt's text embedding; None unless every image has a
    prompt. Emphasis syntax (``((cat))``) is removed first: CLIP reads the words, not the weights."""
    if not prompts or not all(prompts):
        return None
    from genbench.prompts.weighting import plain_text

    text = clip.encode_texts([plain_text(p) for p in prompts])
    return np.sum(image_emb * text, axis=1).astype(np.float32)


def clip_score(image_emb: np.ndarray, text_emb: np.ndarray) -> float:
    """Row-wise pairs; both are re-normalised, so raw (unnormalised) embeddings give the same result."""
    a = np.asarray(image_emb, dtype=np.float64)
    b = np.asarray(text_emb, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or len(a) == 0:
        raise UsageError("text_emb", f"shape {b.shape} for images {a.shape}", "one (N, D) text embedding per image, N > 0")
    return float(np.mean(np.sum(normalise(a) * normalise(b), axis=1)) * 100.0)


def score(inputs: Any) -> float | None:
    """The metric registry's scorer: None when the collection's samples have no prompts (original, retrieved data)."""
    sim = inputs.external().prompt_similarity
    return float(np.mean(sim, dtype=np.float64) * 100.0) if sim is not None and len(sim) else None
