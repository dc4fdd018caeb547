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
from genbench.prompts.weighting import escape_weighting
from genbench.seeds import sample_seed

if TYPE_CHECKING:
    from genbench.catalog.spec import DatasetSpec
    from genbench.prompts.enhance import CategoryEnhancer

log = logging.getLogger(__name__)

STRATEGIES = ("st", "dt", "ce", "rd", "np", "np+rd", "tig")

# Quality terms. The paper's code appends ",highly detailed,hires,8k,sharp focus" for its sharp-focus variant; the
# RD form here follows the project brief's reading of Table 6: "((class)), sharp focus, highly detailed, hires".
RD_QUALITY = ("sharp focus", "highly detailed", "hires")
NP_QUALITY = ("bad shape", "misfigured")
NP_MAX_CLASSES = 5


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
    # random.Random seeded with an int gives the same draws in every process (unlike anything built on hash()).
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


def _rd_text(name: str) -> str:
    # The class name is escaped first so a name with brackets (e.g. "Boeing 737 (200)") keeps them as text.
    return f"(({escape_weighting(name)})), " + ", ".join(RD_QUALITY)


def _np_negative(spec: "DatasetSpec", cls: int, shot: int, run_seed: int) -> str:
    others = [c for i, c in enumerate(spec.classes) if i != int(cls)]
    picked = _rng(run_seed, spec, cls, shot, "negative").sample(others, min(NP_MAX_CLASSES, len(others)))
    return ", ".join(picked + list(NP_QUALITY))


def make_prompt(
    strategy: str,
    spec: "DatasetSpec",
    cls: int,
    shot: int,
    run_seed: int,
    *,
    enhancer: "CategoryEnhancer | None" = None,
) -> Prompt:
    """The prompt of sample (``cls``, ``shot``) under ``strategy``; deterministic for (run_seed, dataset, cls, shot).

    - ``st``: ``spec.simple_template`` filled with the class name.
    - ``dt``: one of ``spec.templates``, chosen per sample (seed purpose ``"template"``).
    - ``ce``: a sentence from ``enhancer`` (a loaded :class:`CategoryEnhancer`, required) seeded per sample (purpose ``"ce"``).
    - ``rd``: ``"((class)), sharp focus, highly detailed, hires"``; ``text`` keeps the weighting syntax
      (:mod:`genbench.prompts.weighting` turns it into weighted embeddings).
    - ``np``: the ST prompt with a negative prompt of up to 5 *other* class names (purpose ``"negative"``) plus
      ``"bad shape, misfigured"``.
    - ``np+rd``: the RD prompt with the NP negative prompt.
    - ``tig``: the DT prompt (same template choice as ``dt`` for the same sample); the engine adds the init image
      (:func:`tig_init_index`) and the strength.
    """
    strategy = parse_strategy(strategy)
    name = _check_class(spec, cls)
    if strategy == "st":
        return _st(spec, name)
    if strategy in ("dt", "tig"):
        dt = _dt(spec, name, cls, shot, run_seed)
        return Prompt(dt.text, None, strategy, dt.template)
    if strategy == "ce":
        if enhancer is None:
            raise UsageError("enhancer", None, "a CategoryEnhancer, loaded once per worker, for strategy 'ce'")
        text = enhancer.sentences(name, sample_seed(run_seed, spec.name, cls, shot, purpose="ce"))
        return Prompt(text, None, "ce", None)
    if strategy == "rd":
        return Prompt(_rd_text(name), None, "rd", None)
    negative = _np_negative(spec, cls, shot, run_seed)
    if strategy == "np":
        st = _st(spec, name)
        return Prompt(st.text, negative, "np", st.template)
    return Prompt(_rd_text(name), negative, "np+rd", None)  # np+rd


def tig_init_index(cls: int, shot: int, n_available: int, run_seed: int, dataset: str) -> int:
    """Which of the ``n_available`` original images of class ``cls`` initialises TIG sample ``shot``.

    Shots walk through one fixed per-class permutation (seeded by run seed, dataset and class), so every original
    image is used equally often (shots ``0..n-1`` use each once) and the choice never depends on batching or order.
    """
    if int(n_available) <= 0:
        raise UsageError("n_available", n_available, f"at least one original image of class {cls} for TIG")
    if int(shot) < 0:
        raise UsageError("shot", shot, "a non-negative shot index")
    order = list(range(int(n_available)))
    random.Random(sample_seed(run_seed, dataset, cls, 0, purpose="tig-init")).shuffle(order)
    return order[int(shot) % int(n_available)]
