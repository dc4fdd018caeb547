"""Every score genbench computes, by name, with what it needs and how it is shown.

Plain data (a tuple, the same in every process): ``needs`` says which inputs a scorer reads, so a run loads only
those: ``class_sums`` (per-class sums the workers already returned), ``sidecars`` (each external embedding),
``images`` (the pixels, streamed from the tars), ``test`` (the real test split's embeddings) and ``text`` (class text
embeddings). ``requires`` names settings the metric cannot run without (FID: Inception weights).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from genbench.errors import UsageError


@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    needs: frozenset[str]
    scorer: str  # "module:function" taking ScoreInputs, returning a float or None (not applicable)
    lower_is_better: bool = False
    requires: tuple[str, ...] = ()
    doc: str = ""


METRICS: tuple[Metric, ...] = (
    Metric("zeroshot", "zero-shot", frozenset({"test", "text"}), "genbench.metrics.zeroshot:score",
           doc="CLIP zero-shot: test . class text embeddings (the baseline every source is compared with)"),
    Metric("cler", "CLER", frozenset({"test", "class_sums"}), "genbench.metrics.cler:score_cler",
           doc="class-centroid classifier: test . normalised mean of each class's external embeddings"),
    Metric("cler_text", "CLER+text", frozenset({"test", "text", "class_sums"}), "genbench.metrics.cler:score_cler_text",
           doc="the paper's Algorithm 1: (test . centroid + test . class text embedding) / 2"),
    Metric("linear_probe", "linear probe", frozenset({"test", "sidecars"}), "genbench.metrics.probe:score",
           doc="logistic regression on the external embeddings, regularisation chosen on external validation data"),
    Metric("clip_score", "CLIP score", frozenset({"sidecars"}), "genbench.metrics.clipscore:score",
           doc="100 x mean cosine of each generated image to its own prompt"),
    Metric("fd_clip", "FD (CLIP)", frozenset({"test", "sidecars"}), "genbench.metrics.frechet:score_fd_clip",
           lower_is_better=True, doc="Fréchet distance between external and test CLIP features"),
    Metric("fid", "FID (Inception)", frozenset({"images"}), "genbench.metrics.frechet:score_fid",
           lower_is_better=True, requires=("inception_weights",),
           doc="Fréchet distance of Inception-v3 pool features of external and test images"),
)
DEFAULT = ("zeroshot", "cler", "cler_text")


def names() -> tuple[str, ...]:
    return tuple(m.name for m in METRICS)


def get(name: str, field: str = "metrics") -> Metric:
    for m in METRICS:
        if m.name == name:
            return m
    raise UsageError(field, name, names())


def parse(value: Any, field: str = "metrics") -> tuple[str, ...]:
    """A non-empty list of known metric names, deduplicated in order."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise UsageError(field, value, "a non-empty list of: " + ", ".join(names()))
    for i, x in enumerate(items):
        get(x, f"{field}[{i}]") if isinstance(x, str) else get(str(x), f"{field}[{i}]")
    return tuple(dict.fromkeys(items))


def check_requirements(metrics: tuple[str, ...], have: dict[str, Any], field: str = "metrics",
                       spelled: dict[str, str] | None = None) -> None:
    """Refuse a metric whose required setting is missing (``spelled`` names each setting as the user writes it)."""
    for name in metrics:
        for need in get(name).requires:
            if not have.get(need):
                key = (spelled or {}).get(need, need)
                raise UsageError(field, name, f"{name} only with {key}: a local .safetensors file of Inception-v3 weights")


def scorer(name: str) -> Callable[[Any], float | None]:
    module, _, fn = get(name).scorer.partition(":")
    return getattr(importlib.import_module(module), fn)
