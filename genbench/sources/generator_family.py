"""A generated source's options against its generator's family (:mod:`genbench.models.families`), at config time.

The family's published defaults fill the options a config leaves unset (:func:`family_defaults`); what the family
cannot do is refused before anything is written, naming the field, the value and the generator:

- negative prompts (the NP strategies) for a family without classifier-free guidance (distilled or embedded guidance);
- ``guidance_scale`` above 1 for a guidance-distilled family (it would run classifier-free guidance: twice the cost
  and other images than the model was distilled for);
- the ``dpmsolver++`` scheduler for a flow-matching family (SD3, FLUX, Sana take only their own, ``default``);
- ``max_sequence_length`` for a family whose pipeline has none (SD 1.x/2.x, SDXL);
- RD's prompt weighting and adaptation (textual inversion, LoRA) outside single-CLIP SD 1.x/2.x;
- TIG and img2img RA where diffusers has no img2img pipeline for the family (PixArt-Sigma, Sana).

A generator of no known family (a local directory, another hub id, tiny, toy, null) is left as it always was.
"""

from __future__ import annotations

from typing import Any

from genbench.errors import UsageError
from genbench.models.families import Family, family_names, families, family_of
from genbench.prompts import NEGATIVE_STRATEGIES, STRATEGIES


def family_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a generated source's config mapping) with its generator family's defaults under it."""
    family = family_of(data.get("generator"))
    return {**family.spec_defaults(), **data} if family is not None else data


def _used(spec: Any) -> list[str]:
    return list(dict.fromkeys(list(spec.strategies) + [s for _, ss in spec.per_dataset for s in ss]))


def _single_clip() -> str:
    return ", ".join(name for name in family_names() if families()[name].single_clip)


def check_family(spec: Any, where: str) -> None:
    """Refuse what ``spec``'s generator family cannot do (see the module docstring)."""
    family = family_of(spec.generator)
    if family is None:
        return
    gen, used = spec.generator, _used(spec)
    if not family.negatives:
        for strategy in used:
            if strategy in NEGATIVE_STRATEGIES:
                without = ", ".join(s for s in STRATEGIES if s not in NEGATIVE_STRATEGIES)
                raise UsageError(f"{where}.strategies", strategy, f"a strategy without negative prompts ({without}): "
                                 f"generator {gen}: {family.describe()} and takes no negative prompt")
    if family.guidance == "distilled" and spec.guidance_scale > 1:
        raise UsageError(f"{where}.guidance_scale", spec.guidance_scale,
                         f"at most 1 for generator {gen}: {family.describe()}, a larger value would run "
                         f"classifier-free guidance (its default is {family.guidance_scale:g})")
    if family.flow_matching and spec.scheduler != "default":
        raise UsageError(f"{where}.scheduler", spec.scheduler, f"default for generator {gen}: {family.name} is a "
                         "flow-matching model (DPM-Solver++ for noise prediction does not apply)")
    if spec.max_sequence_length is not None and family.max_sequence_length is None:
        raise UsageError(f"{where}.max_sequence_length", spec.max_sequence_length,
                         f"unset for generator {gen} ({family.pipeline} takes no max_sequence_length)")
    _check_capabilities(spec, family, used, where)


def _check_capabilities(spec: Any, family: Family, used: list[str], where: str) -> None:
    gen = spec.generator
    if not family.single_clip:
        for strategy in used:
            if "rd" in strategy.split("+") and spec.emphasis == "weighted":
                raise UsageError(f"{where}.strategies", strategy, f"RD's prompt weighting (emphasis: weighted) with a "
                                 f"single-CLIP SD generator ({_single_clip()}); generator {gen} is {family.name} "
                                 "(emphasis: literal sends RD's marks as text)")
        if spec.adapt is not None:
            raise UsageError(f"{where}.adapt", spec.adapt.method, f"adaptation of a single-CLIP SD generator "
                             f"({_single_clip()}); generator {gen} is {family.name}")
    if not family.img2img:
        for strategy in used:
            if strategy == "tig" or (strategy == "ra" and not spec.ra_ip_adapter):
                raise UsageError(f"{where}.strategies", strategy, f"a text-to-image strategy: generator {gen} is "
                                 f"{family.name}, for which diffusers has no img2img pipeline")
