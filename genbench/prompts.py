"""Prompt strategies of the GenBench paper (Section 2.3, Table 6): a (dataset, class, shot) -> one deterministic prompt.

Every random choice (which template, which negative classes, the CE sampling) is drawn from
:func:`genbench.seeds.sample_seed` with its own ``purpose``, so a sample's prompt depends only on
(run seed, dataset, class, shot), never on batching, worker, process or Python's ``hash()`` randomisation.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from genbench.errors import UsageError
from genbench.seeds import sample_seed

if TYPE_CHECKING:
    from genbench.catalog.spec import DatasetSpec

log = logging.getLogger(__name__)

STRATEGIES = ("st", "dt", "ce", "rd", "np", "np+rd", "tig")


def parse_strategy(name: str) -> str:
    """The canonical lower-case strategy name; case and the order of a ``+`` combination do not matter."""
    if not isinstance(name, str):
        raise UsageError("strategy", name, STRATEGIES)
    parts = sorted(p.strip() for p in name.strip().lower().split("+"))
    canonical = "+".join(parts)
    if canonical in STRATEGIES:
        return canonical
    raise UsageError("strategy", name, STRATEGIES)


@dataclass(frozen=True)
class Prompt:
    """One sample's prompt. ``text`` is exactly what reaches the pipeline (RD keeps its ``((...))`` weighting syntax)."""

    text: str
    negative: str | None
    strategy: str
    template: str | None


def _rng(run_seed: int, spec: "DatasetSpec", cls: int, shot: int, purpose: str) -> random.Random:
    # random.Random seeded with an int is stable across processes and Python versions (unlike hash()).
    return random.Random(sample_seed(run_seed, spec.name, cls, shot, purpose=purpose))


def _check_class(spec: "DatasetSpec", cls: int) -> str:
    if not 0 <= int(cls) < len(spec.classes):
        raise UsageError("cls", cls, f"a class index in [0, {len(spec.classes)}) of dataset {spec.name!r}")
    return spec.classes[int(cls)]


def _st(spec: "DatasetSpec", name: str) -> Prompt:
    return Prompt(spec.simple_template.format(name), None, "st", spec.simple_template)


def _dt(spec: "DatasetSpec", name: str, cls: int, shot: int, run_seed: int) -> Prompt:
    template = spec.templates[_rng(run_seed, spec, cls, shot, "template").randrange(len(spec.templates))]
    return Prompt(template.format(name), None, "dt", template)


def make_prompt(strategy: str, spec: "DatasetSpec", cls: int, shot: int, run_seed: int, *, enhancer=None) -> Prompt:
    """The prompt of sample (``cls``, ``shot``) under ``strategy``; deterministic for (run_seed, dataset, cls, shot)."""
    strategy = parse_strategy(strategy)
    name = _check_class(spec, cls)
    if strategy == "st":
        return _st(spec, name)
    if strategy == "dt":
        return _dt(spec, name, cls, shot, run_seed)
    raise UsageError("strategy", strategy, "st, dt (the others are not implemented yet)")
