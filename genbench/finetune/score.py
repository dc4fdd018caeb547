"""Score CLIP models on the real test split, zero-shot style, in the dataset's own metric: the base model and the
fine-tuned one (its own towers embed the images and the class prompts). The test split is opened here and only here,
after the checkpoint was chosen (:func:`genbench.finetune.train.select` never sees it)."""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from genbench.catalog.loaders.base import SplitData
from genbench.metrics import task
from genbench.metrics.zeroshot import class_text_embeddings, zeroshot_logits
from genbench.models.clip import ClipEncoder

log = logging.getLogger(__name__)

CHUNK = 512  # test images decoded and held at once


def split_image_embeddings(encoder: ClipEncoder, split: SplitData, batch_size: int = 64) -> np.ndarray:
    """(N, D) unit rows: the split's images through ``encoder``, decoded :data:`CHUNK` at a time."""
    parts = []
    for start in range(0, len(split), CHUNK):
        images = [split.image(i) for i in range(start, min(start + CHUNK, len(split)))]
        parts.append(encoder.encode_images(images, batch_size=batch_size))
    return np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)


def zeroshot_score(encoder: ClipEncoder, spec: Any, split: SplitData, batch_size: int = 64) -> float:
    """``encoder``'s zero-shot score on ``split`` in ``spec``'s metric (percent)."""
    text = class_text_embeddings(encoder, spec.classes, spec.templates)
    logits = zeroshot_logits(split_image_embeddings(encoder, split, batch_size), text)
    return task.score(spec.metric, split.labels, logits)


def score_on_test(spec: Any, encoders: dict[str, ClipEncoder], open_test: Callable[[], SplitData],
                batch_size: int = 64) -> tuple[dict[str, float], int]:
    """({name: test score} for each encoder, test images): ``open_test()`` is called once, here."""
    split = open_test()
    scores = {name: zeroshot_score(enc, spec, split, batch_size) for name, enc in encoders.items()}
    log.info("%s test split (%d images): %s", spec.name, len(split),
             ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    return scores, len(split)
