"""CLER: a class-centroid classifier built from external-data embeddings, scored on the real test set.

Centroid = mean of a class's L2-normalised external embeddings, re-normalised; logits = test . centroids^T.
CLER+text is the paper's Algorithm 1 ensemble: logits = (test . centroid + test . text) / 2, the mean of the CLER
logit and the zero-shot logit. Both need only per-class sums and counts, which workers return per shard, so no pass
over the images is needed here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genbench.errors import GenbenchError
from genbench.metrics import task
from genbench.vectors import normalise


def centroids(sums: np.ndarray, counts: np.ndarray, class_names: tuple[str, ...] | None = None) -> np.ndarray:
    """Normalised class centroids from per-class sums; a class with no samples is an error (a score would be wrong)."""
    empty = np.flatnonzero(np.asarray(counts) == 0)
    if len(empty):
        names = [class_names[i] if class_names else str(i) for i in empty[:10]]
        raise GenbenchError(
            f"{len(empty)} class(es) have no external samples, so CLER is undefined: {', '.join(names)}"
            + (" ..." if len(empty) > 10 else "")
        )
    return normalise(sums / np.asarray(counts, dtype=np.float64)[:, None]).astype(np.float32)


def cler_logits(test_emb: np.ndarray, cents: np.ndarray) -> np.ndarray:
    return np.asarray(test_emb, dtype=np.float32) @ cents.T


def cler_text_logits(test_emb: np.ndarray, cents: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """Algorithm 1 of the paper: ``(test . centroid + test . text) / 2`` per class, with the normalised centroids of
    :func:`centroids` and the zero-shot class text embeddings (``preds_ensemble = (preds_CLER + preds_CLIP) / 2``).

    Equal to ``test . (centroid + text) / 2``; unlike an earlier genbench, the sum is not re-normalised, so a class
    whose centroid and text embedding disagree is not favoured over one where they agree."""
    test = test_emb.astype(np.float32)
    return (test @ cents.T + test @ text_emb.astype(np.float32).T) / 2.0


def score_cler(inputs: Any) -> float:
    cents = centroids(inputs.sums, inputs.counts, inputs.dataset.classes)
    return task.score_linear(inputs.dataset.metric, inputs.labels, inputs.test_emb, cents)


def score_cler_text(inputs: Any) -> float:
    cents = centroids(inputs.sums, inputs.counts, inputs.dataset.classes)
    return task.score(inputs.dataset.metric, inputs.labels, cler_text_logits(inputs.test_emb, cents, inputs.text_emb))
