"""CLIP zero-shot: per class, the normalised mean of the normalised text embeddings of the dataset's templates."""

from __future__ import annotations

from typing import Any

import numpy as np

from genbench.metrics import task
from genbench.vectors import normalise


def class_text_embeddings(clip: Any, class_names: tuple[str, ...], templates: tuple[str, ...]) -> np.ndarray:
    """(C, D) float32: for each class, normalise(mean_t normalise(encode(template_t.format(class))))."""
    texts = [t.format(c) for c in class_names for t in templates]
    emb = clip.encode_texts(texts).reshape(len(class_names), len(templates), -1)
    return normalise(normalise(emb).mean(axis=1)).astype(np.float32)


def zeroshot_logits(test_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    return test_emb.astype(np.float32) @ text_emb.T


def score(inputs: Any) -> float:
    return task.score(inputs.dataset.metric, inputs.labels, zeroshot_logits(inputs.test_emb, inputs.text_emb))
