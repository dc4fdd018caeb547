"""Score CLIP models on the real test split, zero-shot style, in the dataset's own metric: the base model and the
fine-tuned one (its own towers embed the images and the class prompts). The test split is opened here and only here,
after the checkpoint was chosen (:func:`genbench.finetune.train.select` never sees it)."""

from __future__ import annotations

import logging
from typing import Any, Callable

from genbench.catalog.loaders.base import SplitData
from genbench.embeddings import embed_split_images
from genbench.metrics import task
from genbench.metrics.zeroshot import class_text_embeddings, zeroshot_logits
from genbench.models.clip import ClipEncoder

log = logging.getLogger(__name__)

def zeroshot_score(encoder: ClipEncoder, spec: Any, split: SplitData) -> float:
    """``encoder``'s zero-shot score on ``split`` in ``spec``'s metric (percent)."""
    text = class_text_embeddings(encoder, spec.classes, spec.templates)
    logits = zeroshot_logits(embed_split_images(split, encoder), text)
    return task.score(spec.metric, split.labels, logits)


def score_on_test(spec: Any, encoders: dict[str, ClipEncoder],
                  open_test: Callable[[], SplitData]) -> tuple[dict[str, float], int]:
    """({name: test score} for each encoder, test images): ``open_test()`` is called once, here."""
    split = open_test()
    scores = {name: zeroshot_score(enc, spec, split) for name, enc in encoders.items()}
    log.info("%s test split (%d images): %s", spec.name, len(split),
             ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    return scores, len(split)
