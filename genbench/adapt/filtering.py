"""Which retrieved images a class's textual inversion learns from, and how small references are prepared and reported.

The paper trains textual inversion on (b) retrieved images "filtered by caption similarity": 100 LAION images per
class, each captioned by BLIP-2, kept where the caption's BERT similarity to the class name is at least 0.8. Here:

- ``method``: ``caption`` (the paper's filter: captioner + text-similarity model, :mod:`genbench.models.captioning`),
  ``clip`` (cheaper: CLIP cosine between the image and the prompt ``"a photo of a {class}"``), or ``none`` (keep all).
- A candidate is **kept iff its similarity >= threshold** (similarities are cosines, so thresholds lie in [-1, 1]:
  -1 keeps every candidate; 1 keeps only exact matches). Default threshold: 0.8 for ``caption`` (the paper's),
  0.25 for ``clip`` (an unmeasured starting point for ViT-B/32 image-prompt cosines: tune it per model).
  An empty caption says nothing about the class: it scores -1, so it is kept only at threshold -1.
- Only the first ``candidates`` images offered are considered (the retrieval order is the rank order).
- ``min_side``: references whose shorter side is below it are counted (:func:`small_references`) and reported; the
  paper's textual inversion failed on CIFAR-10's 32x32 images. The trainers upsample references to the generator's
  resolution (bicubic, :func:`genbench.adapt.diffusion.latents`).

**Empty-class policy** (``on_empty`` of the ``adapt:`` block, :data:`genbench.adapt.spec.ON_EMPTY`): a class left
with no reference image is, under ``fail``, a :class:`NoReferences` error (exit code 2) naming the dataset and the
class; under ``plain`` it is generated without adaptation and named in the log and the manifest
(:func:`genbench.adapt.run.train_unit` applies the policy).

Nothing here imports Ray or loads a model at import time: models come in through a :class:`FilterModels` (which loads
them on first use and keeps them) or any object with ``captioner``/``text_model``/``clip`` attributes, so tests can
inject loaded ones.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
from PIL import Image

from genbench.errors import GenbenchError, UsageError
from genbench.models.captioning import (DEFAULT_CAPTIONER, DEFAULT_TEXT_MODEL, check_captioner, check_text_model,
                                        resolve_ref, ALLOWED_CAPTIONER, ALLOWED_TEXT_MODEL)

log = logging.getLogger(__name__)

FIELD = "adapt.filter"
METHODS = ("caption", "clip", "none")
DEFAULT_THRESHOLDS = {"caption": 0.8, "clip": 0.25}
CLIP_PROMPT = "a photo of a {}"
EMPTY_CAPTION_SIMILARITY = -1.0
MAX_CANDIDATES = 10_000  # the paper used 100; a bound keeps one class's captioning from running for hours
MAX_SIDE = 4096  # bound of min_side and of an upsampling target
MAX_CAPTION_TOKENS = 128


# ---------------------------------------------------------------------------------------------------------- settings


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise UsageError(f"{FIELD}.{name}", value, f"an integer in [{low}, {high}]")
    return int(value)


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise UsageError(f"{FIELD}.{name}", value, allowed)
    return value


@dataclass(frozen=True)
class FilterSettings:
    """The reference filter of one adaptation (config key ``adapt.filter``); validated on construction.

    ``threshold=None`` means the method's default (:data:`DEFAULT_THRESHOLDS`); it is resolved here, so a built
    settings object always holds the number that was used (``None`` only for ``method="none"``).
    ``caption_tokens`` bounds a caption's length (new tokens of greedy decoding).
    """

    method: str = "caption"
    threshold: float | None = None
    captioner: str = DEFAULT_CAPTIONER
    text_model: str = DEFAULT_TEXT_MODEL
    candidates: int = 100
    min_side: int = 32
    caption_tokens: int = 30

    def __post_init__(self) -> None:
        _check_choice("method", self.method, METHODS)
        threshold = self.threshold
        if threshold is None:
            threshold = DEFAULT_THRESHOLDS.get(self.method)
        elif (isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer))
              or not math.isfinite(float(threshold)) or not -1.0 <= float(threshold) <= 1.0):
            raise UsageError(f"{FIELD}.threshold", threshold,
                             "a number in [-1, 1] (a cosine similarity; kept iff similarity >= threshold)")
        object.__setattr__(self, "threshold", None if self.method == "none" else float(threshold))
        resolve_ref(self.captioner, f"{FIELD}.captioner", ALLOWED_CAPTIONER)
        resolve_ref(self.text_model, f"{FIELD}.text_model", ALLOWED_TEXT_MODEL)
        object.__setattr__(self, "candidates", _check_int("candidates", self.candidates, 1, MAX_CANDIDATES))
        object.__setattr__(self, "min_side", _check_int("min_side", self.min_side, 1, MAX_SIDE))
        object.__setattr__(self, "caption_tokens",
                           _check_int("caption_tokens", self.caption_tokens, 1, MAX_CAPTION_TOKENS))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> FilterSettings:
        """Settings from a config mapping; an unknown key is a :class:`UsageError` listing the known ones."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise UsageError(FIELD, data, "a mapping with keys " + ", ".join(f.name for f in fields(cls)))
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise UsageError(f"{FIELD}.{key}", data[key], "known keys: " + ", ".join(sorted(known)))
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (for manifests and reports)."""
        return asdict(self)

    def check_models(self) -> None:
        """Preflight: the references the method will load exist (under ``HF_HUB_OFFLINE=1``: are in the local cache)."""
        if self.method == "caption":
            check_captioner(self.captioner, f"{FIELD}.captioner")
            check_text_model(self.text_model, f"{FIELD}.text_model")


def parse_filter(data: Mapping[str, Any] | None, where: str = FIELD) -> FilterSettings:
    """:meth:`FilterSettings.from_dict` with errors naming fields under ``where`` (the config path of the block)."""
    try:
        return FilterSettings.from_dict(data)
    except UsageError as exc:
        if where == FIELD or not exc.field.startswith(FIELD):
            raise
        raise UsageError(where + exc.field[len(FIELD):], exc.value, exc.allowed) from None


# ---------------------------------------------------------------------------------------------------------- models


class CaptionModel(Protocol):
    def caption(self, images: list) -> list[str]: ...


class TextModel(Protocol):
    def similarity(self, texts: list[str], reference: str) -> np.ndarray: ...


class ImageTextModel(Protocol):  # genbench.models.clip.ClipEncoder
    def encode_images(self, images: list) -> np.ndarray: ...

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


class FilterModels:
    """The models a filter needs, each given loaded (used as is) or as a reference (loaded on first use, then kept:
    one worker filters every class with the same loaded models). References come from ``settings`` unless
    ``captioner``/``text_model`` are given; ``clip`` is the run's CLIP model, needed by ``method="clip"`` only.
    :meth:`release` drops what this object loaded, e.g. to free GPU memory before textual-inversion training."""

    def __init__(self, settings: FilterSettings | None = None, *, captioner: str | CaptionModel | None = None,
                 text_model: str | TextModel | None = None, clip: str | ImageTextModel | None = None,
                 device: str | None = None, cache_dir: str | None = None):
        settings = settings if settings is not None else FilterSettings()
        self._refs = {"captioner": captioner if captioner is not None else settings.captioner,
                      "text_model": text_model if text_model is not None else settings.text_model, "clip": clip}
        self._loaded: dict[str, Any] = {k: v for k, v in self._refs.items() if v is not None and not isinstance(v, str)}
        self.device, self.cache_dir, self.caption_tokens = device, cache_dir, settings.caption_tokens

    def _get(self, name: str) -> Any:
        if name not in self._loaded:
            ref = self._refs[name]
            if ref is None:
                raise ValueError(f"FilterModels: no {name} given (method 'clip' needs the run's CLIP model)")
            if name == "captioner":
                from genbench.models.captioning import load_captioner

                self._loaded[name] = load_captioner(ref, self.device, self.cache_dir,
                                                    max_new_tokens=self.caption_tokens, field=f"{FIELD}.captioner")
            elif name == "text_model":
                from genbench.models.captioning import load_text_model

                self._loaded[name] = load_text_model(ref, self.device, self.cache_dir, field=f"{FIELD}.text_model")
            else:
                from genbench.models.clip import load_clip

                self._loaded[name] = load_clip(ref, self.device, self.cache_dir)
        return self._loaded[name]

    @property
    def captioner(self) -> CaptionModel:
        return self._get("captioner")

    @property
    def text_model(self) -> TextModel:
        return self._get("text_model")

    @property
    def clip(self) -> ImageTextModel:
        return self._get("clip")

    def release(self) -> None:
        """Forget the models this object loaded itself (injected ones are the caller's to keep)."""
        for name, ref in self._refs.items():
            if isinstance(ref, str):
                self._loaded.pop(name, None)


# ---------------------------------------------------------------------------------------------------------- filtering


@dataclass(frozen=True)
class FilterResult:
    """The outcome of filtering one class's candidates. Per-candidate tuples are in candidate order; ``captions`` is
    None except for the ``caption`` method, ``similarities`` None for ``none``."""

    class_name: str
    method: str
    threshold: float | None
    candidates: tuple[Image.Image, ...]
    captions: tuple[str, ...] | None
    similarities: tuple[float, ...] | None
    kept_flags: tuple[bool, ...]
    n_offered: int  # images offered before the ``candidates`` cap
    min_side: int

    @property
    def kept(self) -> list[Image.Image]:
        """The kept images, in candidate order."""
        return [im for im, keep in zip(self.candidates, self.kept_flags) if keep]

    @property
    def n_candidates(self) -> int:
        return len(self.candidates)

    @property
    def n_kept(self) -> int:
        return sum(self.kept_flags)

    @property
    def n_small(self) -> int:
        """Kept references whose shorter side is below ``min_side``."""
        return small_references(self.kept, self.min_side)

    def record(self) -> dict[str, Any]:
        """JSON-able summary for reports: counts and, per candidate, its caption, similarity and whether it was kept."""
        per = []
        for i, keep in enumerate(self.kept_flags):
            row: dict[str, Any] = {"index": i, "kept": keep}
            if self.captions is not None:
                row["caption"] = self.captions[i]
            if self.similarities is not None:
                row["similarity"] = round(self.similarities[i], 6)
            per.append(row)
        return {"class": self.class_name, "method": self.method, "threshold": self.threshold,
                "offered": self.n_offered, "candidates": self.n_candidates, "kept": self.n_kept,
                "small": self.n_small, "min_side": self.min_side, "per_candidate": per}


def class_text(class_name: str) -> str:
    """The class name as text models read it: underscores as spaces, whitespace collapsed."""
    return " ".join(class_name.replace("_", " ").split())


def filter_references(images: Sequence[Image.Image], class_name: str, settings: FilterSettings,
                      models: FilterModels | Any = None) -> FilterResult:
    """Filter one class's candidate references (see the module docstring). ``models`` is needed for ``caption``
    (``captioner``, ``text_model``) and ``clip`` (``clip``); ``none`` keeps every candidate and loads nothing."""
    if models is None and settings.method != "none":
        raise ValueError(f"filter_references: method {settings.method!r} needs models (a FilterModels)")
    offered = list(images)
    cands = offered[: settings.candidates]
    if len(offered) > len(cands):
        log.info("class %r: considering the first %d of %d candidates (adapt.filter.candidates)", class_name,
                 len(cands), len(offered))
    text = class_text(class_name)
    captions: tuple[str, ...] | None = None
    sims: np.ndarray | None = None
    if settings.method == "none" or not cands:
        keep = [True] * len(cands)
        if settings.method != "none":
            sims = np.zeros(0)
            captions = () if settings.method == "caption" else None
    elif settings.method == "caption":
        captions = tuple(models.captioner.caption(cands))
        if len(captions) != len(cands):
            raise GenbenchError(f"captioner returned {len(captions)} captions for {len(cands)} images")
        sims = np.full(len(cands), EMPTY_CAPTION_SIMILARITY)
        said = [i for i, c in enumerate(captions) if c.strip()]
        if said:
            sims[said] = models.text_model.similarity([captions[i] for i in said], text)
    else:  # clip
        img = np.asarray(models.clip.encode_images(cands), dtype=np.float64)
        txt = np.asarray(models.clip.encode_texts([CLIP_PROMPT.format(text)]), dtype=np.float64)
        sims = np.clip(img @ txt[0], -1.0, 1.0)
    if sims is not None:
        keep = [bool(s >= settings.threshold) for s in sims]
    result = FilterResult(
        class_name=class_name, method=settings.method, threshold=settings.threshold, candidates=tuple(cands),
        captions=captions, similarities=None if sims is None else tuple(float(s) for s in sims),
        kept_flags=tuple(keep), n_offered=len(offered), min_side=settings.min_side,
    )
    log.info("class %r: kept %d of %d candidates (%s, threshold %s)", class_name, result.n_kept,
             result.n_candidates, settings.method, settings.threshold)
    return result


# ---------------------------------------------------------------------------------------------------------- empty classes


class NoReferences(UsageError):
    """A class left with no reference image under ``on_empty: fail``; exit code 2, naming the dataset and the class."""

    def __init__(self, dataset: str, class_name: str, detail: str, field: str = "adapt.on_empty"):
        self.dataset, self.class_name, self.detail = dataset, class_name, detail
        GenbenchError.__init__(
            self,
            f"dataset {dataset!r} class {class_name!r}: no reference image left for adaptation ({detail}); lower "
            f"{FIELD}.threshold, offer more candidates, or set {field}: plain to generate this class without "
            f"adaptation",
        )
        self.field, self.value, self.allowed = field, "fail", "fail, plain"

    def __reduce__(self):  # raised in a Ray worker, it must arrive in the driver as itself
        return (NoReferences, (self.dataset, self.class_name, self.detail, self.field))


# ---------------------------------------------------------------------------------------------------------- resolution


def small_references(images: Sequence[Image.Image], min_side: int = 32) -> int:
    """How many images have a shorter side below ``min_side`` pixels (the report's "N references below 32 px")."""
    _check_int("min_side", min_side, 1, MAX_SIDE)
    return sum(1 for im in images if min(im.size) < min_side)
