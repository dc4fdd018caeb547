"""What the toy models learn from: the digits train split (never the test split) and captions from its templates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from genbench.catalog import get_dataset
from genbench.catalog.loaders import load_split

# Prompt strategies reach the generator as text; these are the forms they take for a digit, besides the templates.
_EXTRA_FORMS = ("{}", "a photo of {}")


@dataclass(frozen=True)
class TrainingSet:
    """The train split's images (RGB PIL), labels, its fingerprint and per class the captions to learn from."""

    dataset: str
    images: list[Image.Image]
    labels: np.ndarray
    fingerprint: str
    captions: tuple[tuple[str, ...], ...]  # per class


def training_set(dataset: str = "digits", extra_forms: bool = False) -> TrainingSet:
    """The ``train`` split of ``dataset`` with captions from its templates and simple template (and, with
    ``extra_forms``, the bare class name and "a photo of <name>", the forms the ST and ST-photo strategies send)."""
    split = load_split(get_dataset(dataset), "train")
    images = [split.image(i) for i in range(len(split))]
    return TrainingSet(dataset, images, np.asarray(split.labels, dtype=np.int64), split.fingerprint,
                       class_captions(dataset, extra_forms))


def class_captions(dataset: str, extra_forms: bool = False) -> tuple[tuple[str, ...], ...]:
    """Per class, its captions (see :func:`training_set`); reads the catalog only."""
    spec = get_dataset(dataset)
    forms = list(spec.templates) + [spec.simple_template] + (list(_EXTRA_FORMS) if extra_forms else [])
    # dict.fromkeys keeps the first occurrence: no caption twice, order fixed.
    return tuple(tuple(dict.fromkeys(f.format(name) for f in forms)) for name in spec.classes)


def toy_corpus(dataset: str) -> list[str]:
    """The texts the toy tokenizers keep whole words for: every caption either toy model learns from and the words
    the prompt strategies add (RD's quality words, NP's negatives). Other text still tokenises, into smaller pieces."""
    from genbench.prompts.strategies import NP_QUALITY, RD_QUALITY

    captions = class_captions(dataset, extra_forms=True)
    return [c for per_class in captions for c in per_class] + list(RD_QUALITY) + list(NP_QUALITY)


def training_inputs(dataset: str) -> dict[str, object]:
    """What a toy model's training reads besides its config: the split's fingerprint and the corpus (part of the
    recipe key, so a changed template or strategy word means a new model, never stale weights)."""
    spec = get_dataset(dataset)
    split = load_split(spec, "train")
    from genbench.prompts.strategies import NP_QUALITY, RD_QUALITY

    return {"fingerprint": split.fingerprint, "classes": list(spec.classes), "templates": list(spec.templates),
            "simple_template": spec.simple_template, "forms": list(_EXTRA_FORMS), "rd": list(RD_QUALITY),
            "np": list(NP_QUALITY)}
