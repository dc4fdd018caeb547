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

STRATEGIES = ("st", "st-photo", "dt", "ce", "rd", "np", "np+rd", "ra", "tig")
# The strategies whose prompts carry a negative prompt (NP's other class names, make_prompt): refused for generator
# families that take none (genbench.sources.generator_family).
NEGATIVE_STRATEGIES = tuple(s for s in STRATEGIES if "np" in s.split("+"))
# Table 2's row names for the combinations built on DT: NP and RD already start from a DT prompt.
ALIASES = {"dt+np": "np", "dt+rd": "rd", "dt+np+rd": "np+rd"}

# Table 6: RD appends these restrictive words to a DT prompt, each emphasised with "(( ))".
RD_QUALITY = ("sharp focus", "highly detailed", "hires")
RD_SUFFIX = ", " + ", ".join(f"(({w}))" for w in RD_QUALITY)
# Section 2.3 / Table 6: "bad shape, misfigured" are the quality negatives every NP prompt carries.
NP_QUALITY = ("bad shape", "misfigured")
NP_MAX_CLASSES = 5
EMPHASIS_MODES = ("weighted", "literal")
# Section 2.3's wording of the simple template, kept as its own strategy.
ST_PHOTO = "a photo of {}"


def parse_strategy(name: str) -> str:
    """The canonical lower-case strategy name; case and the order of a ``+`` combination do not matter."""
    if not isinstance(name, str):
        raise UsageError("strategy", name, STRATEGIES)
    parts = sorted(p.strip() for p in name.strip().lower().split("+"))
    canonical = "+".join(parts)
    canonical = ALIASES.get(canonical, canonical)
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


def _dt(spec: "DatasetSpec", name: str, cls: int, shot: int, run_seed: int) -> Prompt:
    template = spec.templates[_rng(run_seed, spec, cls, shot, "template").randrange(len(spec.templates))]
    return Prompt(template.format(name), None, "dt", template)


def _rd_text(dt: Prompt, name: str, emphasis: str) -> str:
    if emphasis == "literal":
        return dt.text + RD_SUFFIX
    # Weighted: the DT part is read as plain text (a class name such as "Boeing 737 (200)" keeps its brackets), so
    # only the restrictive words carry emphasis.
    return escape_weighting(dt.template.format(name)) + RD_SUFFIX


def _np_negative(spec: "DatasetSpec", cls: int, shot: int, run_seed: int, weighted: bool = False) -> str:
    others = [c for i, c in enumerate(spec.classes) if i != int(cls)]
    picked = _rng(run_seed, spec, cls, shot, "negative").sample(others, min(NP_MAX_CLASSES, len(others)))
    if weighted:
        # A weighted prompt's negative is read with the same syntax: "cherimoya (custard apple)" must stay text.
        picked = [escape_weighting(c) for c in picked]
    return ", ".join(picked + list(NP_QUALITY))


def make_prompt(
    strategy: str,
    spec: "DatasetSpec",
    cls: int,
    shot: int,
    run_seed: int,
    *,
    enhancer: "CategoryEnhancer | None" = None,
    emphasis: str = "weighted",
    ce_prepend: bool = False,
) -> Prompt:
    """The prompt of sample (``cls``, ``shot``) under ``strategy`` (Table 6); deterministic for (run_seed, dataset,
    cls, shot).

    - ``st``: the class name alone (Table 6). ``st-photo``: ``"a photo of {}"`` (Section 2.3's wording).
    - ``dt``: one of ``spec.templates``, chosen per sample (seed purpose ``"template"``).
    - ``ce``: a sentence from ``enhancer`` (a loaded :class:`CategoryEnhancer`, required) seeded per sample (purpose
      ``"ce"``); the class name is not forced into it unless ``ce_prepend`` (the paper reports CE's drift).
    - ``rd``: the sample's DT prompt followed by ``", ((sharp focus)), ((highly detailed)), ((hires))"``. With
      ``emphasis="weighted"`` the brackets are real prompt weighting (:mod:`genbench.prompts.weighting`; brackets in
      the class name are escaped); ``"literal"`` passes the text unchanged.
    - ``np``: the sample's DT prompt; negative prompt = up to 5 *other* class names (all others when the dataset has
      fewer; purpose ``"negative"``) then ``"bad shape, misfigured"``.
    - ``np+rd``: the RD prompt with the NP negative prompt.
    - ``ra``, ``tig``: the DT prompt; the engine adds the image the generation starts from (a retrieved image for RA,
      an original one for TIG, :func:`tig_init_index`) and the strength.

    The same sample uses the same template under dt, rd, np, np+rd, ra and tig, so strategies compare paired.
    """
    strategy = parse_strategy(strategy)
    if emphasis not in EMPHASIS_MODES:
        raise UsageError("emphasis", emphasis, EMPHASIS_MODES)
    name = _check_class(spec, cls)
    if strategy == "st":
        return Prompt(name, None, "st", "{}")
    if strategy == "st-photo":
        return Prompt(ST_PHOTO.format(name), None, "st-photo", ST_PHOTO)
    if strategy == "ce":
        if enhancer is None:
            raise UsageError("enhancer", None, "a CategoryEnhancer, loaded once per worker, for strategy 'ce'")
        seed = sample_seed(run_seed, spec.name, cls, shot, purpose="ce")
        return Prompt(enhancer.sentences(name, seed, prepend_class=ce_prepend), None, "ce", None)
    dt = _dt(spec, name, cls, shot, run_seed)
    if strategy in ("dt", "ra", "tig"):
        return Prompt(dt.text, None, strategy, dt.template)
    parts = strategy.split("+")
    weighted = "rd" in parts and emphasis == "weighted"  # the generator then reads prompt and negative as weighted
    negative = _np_negative(spec, cls, shot, run_seed, weighted) if "np" in parts else None
    text = _rd_text(dt, name, emphasis) if "rd" in parts else dt.text
    return Prompt(text, negative, strategy, dt.template)


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
