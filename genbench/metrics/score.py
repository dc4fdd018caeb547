"""Scoring one collection at one shot count: the inputs a run has at hand, and every requested metric over them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from genbench.metrics import registry

log = logging.getLogger(__name__)


@dataclass
class ScoreInputs:
    """What the scorers read. ``sums``/``counts``: per-class sums of unit external embeddings (float64) and counts;
    ``external()``: the external embeddings from the sidecars (read once, on first use); ``images()``: iterators over
    the external and the real test images (FID streams them)."""

    dataset: Any  # catalog DatasetSpec
    test_emb: np.ndarray
    labels: np.ndarray
    text_emb: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    external_reader: Callable[[], Any] | None = None
    images: Callable[[], tuple[Iterable, Iterable]] | None = None
    inception_weights: str | None = None
    seed: int = 0
    label: str = ""
    _external: Any = field(default=None, repr=False)

    def external(self) -> Any:
        if self._external is None:
            if self.external_reader is None:
                raise ValueError(f"{self.label}: no sidecar reader for a metric that needs the external embeddings")
            self._external = self.external_reader()
        return self._external


def score_all(metrics: tuple[str, ...], inputs: ScoreInputs) -> dict[str, float]:
    """Every requested metric that applies, at full precision (round only for display)."""
    scores: dict[str, float] = {}
    for name in metrics:
        value = registry.scorer(name)(inputs)
        if value is None:
            log.info("%s: %s does not apply (skipped)", inputs.label, name)
            continue
        scores[name] = float(value)
    return scores
