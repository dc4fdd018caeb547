"""Generated data: text-to-image samples for (class, shot) slots under a prompt strategy, one seed per sample."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Callable

from PIL import Image

from genbench import validate
from genbench.adapt.spec import DATADREAM_SAMPLING, UNADAPTABLE_STRATEGIES, AdaptSpec, parse_adapt
from genbench.errors import UsageError
from genbench.models import refs
from genbench.prompts import (
    CE_DEFAULT_REF,
    EMPHASIS_MODES,
    STRATEGIES,
    make_prompt,
    parse_strategy,
    tig_init_index,
)
from genbench.seeds import sample_seed
from genbench.shards.schema import IMAGE_FORMATS, Sample, encode_image
from genbench.sources import adaptation, augment
from genbench.sources.generator_family import check_family, family_defaults
from genbench.sources.base import (
    CheckContext,
    PlanContext,
    ShardSamples,
    SlotPlan,
    Source,
    SourceSpec,
    option,
)
from genbench.sources.links import Upstream


def _strategy_list(value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > len(STRATEGIES):
        raise UsageError(where, value, "a non-empty list of strategies: " + ", ".join(STRATEGIES))
    out = []
    for i, s in enumerate(items):
        try:
            out.append(parse_strategy(s))
        except UsageError:
            raise UsageError(f"{where}[{i}]", s, STRATEGIES) from None
    return tuple(dict.fromkeys(out))


def _per_dataset(value: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise UsageError(where, value, "a mapping dataset -> list of strategies")
    return tuple((str(ds), _strategy_list(s, f"{where}.{ds}")) for ds, s in value.items())


def _resolution(value: Any, where: str) -> int | None:
    if value is None:
        return None
    v = validate.integer(value, where, 8, 4096)
    if v % 8:
        raise UsageError(where, v, "a multiple of 8 from 8 to 4096 (the VAE downsamples by 8)")
    return v


def _is(strategy: str) -> Callable[["GeneratedSpec"], bool]:
    return lambda spec: spec.strategy == strategy


def _has(part: str) -> Callable[["GeneratedSpec"], bool]:
    return lambda spec: spec.strategy is not None and part in spec.strategy.split("+")


def _ra_img2img(spec: "GeneratedSpec") -> bool:
    return spec.strategy == "ra" and not spec.ra_ip_adapter


def _ra_ip(spec: "GeneratedSpec") -> bool:
    return spec.strategy == "ra" and bool(spec.ra_ip_adapter)


# Strategies whose prompts changed when they were aligned with the paper's Table 6 (ST was "a photo of a {}.", RD
# "((class)), ...", NP the ST prompt, CE always named the class): their collections record the prompt set, so a
# collection made with the earlier prompts is refused instead of being extended with different ones.
_TABLE6_CHANGED = ("st", "ce", "rd", "np", "np+rd")


@dataclass(frozen=True, kw_only=True)
class GeneratedSpec(SourceSpec):
    """A text-to-image generator under one or more prompt strategies; each strategy makes its own collection."""

    generator: str = option(check=validate.texts("a model reference: " + refs.ALLOWED_GENERATOR), token="", always=True,
                            help="'toy', 'tiny', tiny:<family>, 'null', random:<config>, a hub id or a local diffusers "
                                 "directory")
    strategies: tuple[str, ...] = option(("st",), _strategy_list, identity=False)
    per_dataset: tuple[tuple[str, tuple[str, ...]], ...] = option((), _per_dataset, identity=False)
    steps: int = option(25, validate.ints(1, 1000), token="steps{}", always=True)
    guidance_scale: float = option(7.5, validate.nums(0.0, 100.0), token="cfg{}", always=True)
    batch_size: int = option(8, validate.ints(1, 1024), token="bs{}", always=True)
    resolution: int | None = option(None, _resolution, token="res{}", always=True)
    image_size: int | None = option(None, validate.ints(8, 4096, optional=True), token="px{}", always=True)
    image_format: str = option("jpg", validate.one_of(*IMAGE_FORMATS), token="{}", always=True)
    jpeg_quality: int = option(95, validate.ints(1, 100), token="q{}", always=True)
    dtype: str | None = option(None, validate.one_of(None, "bf16", "fp16", "fp32"), token="{}", always=True)
    scheduler: str = option("dpmsolver++", validate.one_of("dpmsolver++", "default"), token="sched-{}", always=True)
    compile: bool = option(False, validate.flags(), token="compiled", always=True)
    max_sequence_length: int | None = option(None, validate.ints(1, 4096, optional=True), token="seq{}",
                                             help="text tokens of a T5/Gemma-encoder family (SD3, FLUX, PixArt, Sana)")
    ce_model: str = option(CE_DEFAULT_REF, validate.texts("a T5 model reference: 'tiny', a hub id or a local directory"),
                           token="ce-{}", always=True, when=_is("ce"))
    tig_strength: float = option(0.75, validate.nums(0.0, 1.0, lo_open=True), token="tig{}", always=True, when=_is("tig"))
    tig_shots: int = option(16, validate.ints(1, 1_000_000), token="tigk{}", always=True, when=_is("tig"))
    emphasis: str = option("weighted", validate.one_of(*EMPHASIS_MODES), token="emph-{}", when=_has("rd"),
                           help="RD's (( )) marks: real prompt weighting, or 'literal' text")
    ce_prepend: bool = option(False, validate.flags(), token="ce-prepend", when=_is("ce"))
    prompts: str = option("table6", validate.one_of("table6"), token="", always=True,
                          when=lambda spec: spec.strategy in _TABLE6_CHANGED)
    # RA (retrieval-augmented): img2img from a retrieved image of the class, or, with IP-Adapter weights, that image as
    # the IP-Adapter's image prompt. The retrieved collection is the dataset's retrieved source (``ra_from`` picks
    # one of several); the planner records its identity (ra_retrieved*) and location (ra_uri).
    ra_strength: float = option(0.75, validate.nums(0.0, 1.0, lo_open=True), token="ra{}", always=True,
                                when=_ra_img2img)
    ra_shots: int = option(16, validate.ints(1, 1_000_000), token="rak{}", always=True, when=_is("ra"),
                           help="RA starts from one of each class's first ra_shots retrieved images")
    ra_from: int | str | None = option(None, augment.parse_ra_from, identity=False)
    ra_ip_adapter: str | None = option(None, validate.texts("a local IP-Adapter weights file (.safetensors)"),
                                       identity=False)
    ra_ip_scale: float = option(0.5, validate.nums(0.0, 10.0), token="ipscale{}", always=True, when=_ra_ip)
    # Knowledge injection (genbench.adapt.spec): the planner records the adaptation's identity in adapt_id.
    adapt: AdaptSpec | None = option(None, parse_adapt, identity=False,
                                     help="textual inversion or LoRA learned per class before generating")
    adapt_id: str = option("", token="adapt-{}", internal=True, when=lambda spec: spec.adapt is not None)
    adapt_from_uri: str = option("", identity=False, internal=True)
    adapt_from_name: str = option("", identity=False, internal=True)
    # The toy generator's recipe key: a collection made by an earlier toy model is refused, never extended.
    generator_recipe: str = option("", token="", internal=True)
    ra_ip_adapter_id: str = option("", token="ipa-{}", internal=True, when=_ra_ip)
    ra_retrieved: str = option("", token="from-{}", internal=True, when=_is("ra"))
    ra_retrieved_name: str = option("", token="", internal=True, when=_is("ra"))
    ra_uri: str = option("", identity=False, internal=True)

    @property
    def strategy(self) -> str | None:
        """The strategy of an expanded spec (one collection); None while the entry still lists several."""
        return self.strategies[0] if len(self.strategies) == 1 else None

    def strategies_for(self, dataset: str) -> tuple[str, ...]:
        return dict(self.per_dataset).get(dataset, self.strategies)

    def expand(self, dataset: str) -> list["GeneratedSpec"]:
        return [replace(self, strategies=(s,), per_dataset=()) for s in self.strategies_for(dataset)]

    def base_name(self) -> str:
        return f"{refs.generator_slug(self.generator)}_{self.strategy.replace('+', '-')}"

    def identity_options(self) -> dict[str, Any]:
        return {**super().identity_options(), "strategy": self.strategy}

    def uses(self, strategy: str) -> bool:
        """Whether any dataset's collections use ``strategy``."""
        return strategy in self.strategies or any(strategy in s for _, s in self.per_dataset)

    @classmethod
    def parse(cls, data: dict[str, Any], where: str, kind: str, datasets: tuple[str, ...]) -> "GeneratedSpec":
        adapt = data.get("adapt")
        if isinstance(adapt, dict) and adapt.get("method") == "lora":
            data = {**DATADREAM_SAMPLING, **data}  # DataDream samples its LoRA generator this way
        # A known generator family's published defaults (genbench.models.families) under what the config sets.
        return super().parse(family_defaults(data), where, kind, datasets)

    def validate(self, where: str, datasets: tuple[str, ...]) -> None:
        check_family(self, where)
        if self.adapt is not None:
            if self.generator == "null":
                raise UsageError(f"{where}.adapt", "null", "a diffusers generator to adapt (generator null makes "
                                                           "blank images)")
            for strategy in UNADAPTABLE_STRATEGIES:
                if self.uses(strategy):
                    raise UsageError(f"{where}.strategies", strategy, "strategies whose prompts can name a learned "
                                                                      "class (CE's T5 model never saw the token)")
        for ds, _ in self.per_dataset:
            if ds not in datasets:
                raise UsageError(f"{where}.per_dataset.{ds}", ds, "a dataset listed in 'datasets'")
        # img2img runs only the last steps * strength steps: zero of them is an empty run.
        if self.uses("tig") and int(self.steps * self.tig_strength) < 1:
            raise UsageError(f"{where}.tig_strength", self.tig_strength, f"at least 1/steps = {1 / self.steps:.3g}")
        if self.uses("ra") and not self.ra_ip_adapter and int(self.steps * self.ra_strength) < 1:
            raise UsageError(f"{where}.ra_strength", self.ra_strength, f"at least 1/steps = {1 / self.steps:.3g}")


class GeneratedSource(Source):
    kind = "generated"
    spec_type = GeneratedSpec

    def check(self, spec: GeneratedSpec, where: str, ctx: CheckContext) -> None:
        refs.check_generator(spec.generator, f"{where}.generator", ctx.cache_dir)
        if spec.adapt is not None and spec.adapt.filter is not None:
            spec.adapt.filter.check_models()  # the captioner and text model are there (offline: in the local cache)
        if spec.ra_ip_adapter and spec.uses("ra"):
            augment.check_ip_adapter(spec.ra_ip_adapter, f"{where}.ra_ip_adapter")

    def resolve(self, spec: GeneratedSpec, ctx: CheckContext) -> GeneratedSpec:
        spec = replace(spec, generator_recipe=refs.generator_recipe(spec.generator))
        if spec.strategy == "ra" and spec.ra_ip_adapter:
            # Workers may run elsewhere: an absolute path; the identity is the weights' digest, not where they lie.
            path = os.path.abspath(spec.ra_ip_adapter)
            augment.check_ip_adapter(path, "ra_ip_adapter")  # check() names the entry; the planner may come first
            return replace(spec, ra_ip_adapter=path, ra_ip_adapter_id=augment.ip_adapter_id(path))
        return spec

    def link(self, spec: GeneratedSpec, entry_spec: GeneratedSpec, where: str, dataset: str,
             upstream: list[Upstream]) -> tuple[GeneratedSpec, tuple[str, ...]]:
        """RA reads a retrieved collection of the run (:func:`genbench.sources.augment.link_ra`), as does adaptation
        on retrieved references (:func:`genbench.sources.adaptation.link_adapt`), which also names the adaptation."""
        after: tuple[str, ...] = ()
        if spec.strategy == "ra":
            spec, after = augment.link_ra(spec, entry_spec, where, dataset, upstream)
        if spec.adapt is not None:
            spec, more = adaptation.link_adapt(spec, where, dataset, upstream)
            after = tuple(dict.fromkeys(after + more))
        return spec, after

    def plan_slots(self, job: Any, pending: list[Any], done: list[tuple[Any, dict[str, Any]]],
                   ctx: PlanContext) -> SlotPlan:
        return augment.plan_ra(job, pending, done) if job.spec.strategy == "ra" else SlotPlan(pending)

    def needs_train_split(self, spec: GeneratedSpec) -> bool:
        # img2img starts from k-shot originals; adaptation learns from them
        return spec.strategy == "tig" or (spec.adapt is not None and spec.adapt.references == "original")

    def untrained(self, spec: GeneratedSpec) -> list[str]:
        found = [f"generator {spec.generator}"] if refs.generator_untrained(spec.generator) else []
        return found + (["CE model tiny"] if spec.strategy == "ce" and spec.ce_model == "tiny" else [])

    def _generator(self, job: Any, resources: Any) -> Any:
        spec = job.spec
        ip_adapter = spec.ra_ip_adapter if spec.strategy == "ra" else None
        return resources.generator(spec.generator, spec.dtype, spec.scheduler, spec.compile, job.cache_dir,
                                   ip_adapter=ip_adapter, instance=spec.adapt_id)

    def warm(self, job: Any, resources: Any) -> None:
        self._generator(job, resources)
        if job.spec.strategy == "ce":
            resources.enhancer(job.spec.ce_model, job.cache_dir)
        if job.spec.strategy == "tig":
            resources.split(job.dataset, "train", job.data_root)

    def produce(self, task: Any, resources: Any) -> ShardSamples:
        from genbench.catalog import get_dataset

        job, spec = task.job, task.job.spec
        enhancer = resources.enhancer(spec.ce_model, job.cache_dir) if spec.strategy == "ce" else None
        init: InitImage | None = None
        missing: list[tuple[int, int]] = []  # RA slots whose class has no retrieved image
        if spec.strategy == "tig":
            init = _tig_init(job, resources)
        elif spec.strategy == "ra":
            init, missing = augment.ra_starts(task)
        gone = set(missing)
        members = [m for m in task.members() if m not in gone]
        generator = self._generator(job, resources)
        namer = adaptation.class_namer(job, generator) if spec.adapt is not None else None
        out = generate_samples(generator, get_dataset(job.dataset), members, job.run_seed,
                               spec, enhancer=enhancer, init_image=init, class_text=namer)
        augment.skip_missing(out, missing, spec)
        return out


def _tig_init(job: Any, resources: Any) -> Callable[[int, int], Image.Image]:
    """TIG's init image for (class, shot): one of the class's first ``tig_shots`` originals, walked in a fixed order."""
    from genbench.sources.original import class_order, shot_orders

    split = resources.split(job.dataset, "train", job.data_root)
    orders, k = shot_orders(resources), job.spec.tig_shots

    def init_image(cls: int, shot: int) -> Image.Image:
        order = class_order(split, job.dataset, cls, job.run_seed, orders)[:k]
        if len(order) == 0:
            raise ValueError(f"TIG: class {cls} has no original image to start from")
        return split.image(int(order[tig_init_index(cls, shot, len(order), job.run_seed, job.dataset)]))

    return init_image


InitImage = Callable[[int, int], "Image.Image | tuple[Image.Image, dict[str, Any]]"]


def generate_samples(generator: Any, spec: Any, members: list[tuple[int, int]], run_seed: int, options: GeneratedSpec,
                     enhancer: Any = None, init_image: InitImage | None = None,
                     class_text: Callable[[int], str] | None = None) -> ShardSamples:
    """Generate the samples of ``members`` in micro-batches of ``options.batch_size``.

    The batches depend only on the shard's slots, never on the worker, so a retried shard is made the same way.
    ``init_image(cls, shot)`` supplies the image a sample starts from (TIG: an original; RA: a retrieved image, with
    the json fields that name it), else None; a slot whose image cannot be read is skipped (counted, logged, in the
    shortfall). RA with IP-Adapter weights uses it as the image prompt instead of the img2img start.
    ``class_text(cls)`` (an adapted generator) switches the pipeline to class ``cls``'s artefact and returns the text
    that names it in the sample's prompt (a learned token); other classes named in it (NP's negatives) keep their
    names. Per-class LoRA adapters apply to a whole batch, so then each batch holds one class.
    """
    strategy = options.strategy
    out = ShardSamples([])
    inits: dict[tuple[int, int], Image.Image] = {}
    named: dict[tuple[int, int], dict[str, Any]] = {}
    if init_image is not None:
        for slot in members:
            try:
                got = init_image(*slot)
            except Exception as exc:  # an unreadable original or retrieved image
                out.skip(slot, f"the {'retrieved' if strategy == 'ra' else 'original'} image initialising {slot}", exc)
                continue
            inits[slot], named[slot] = got if isinstance(got, tuple) else (got, {})
        members = [m for m in members if m in inits]
    samples = out.samples
    for chunk in _batches(members, options):
        names = {c: class_text(c) for c in dict.fromkeys(c for c, _ in chunk)} if class_text else {}
        prompts = [make_prompt(strategy, _naming(spec, c, names.get(c)), c, k, run_seed, enhancer=enhancer,
                               emphasis=options.emphasis, ce_prepend=options.ce_prepend) for c, k in chunk]
        seeds = [sample_seed(run_seed, spec.name, c, k) for c, k in chunk]
        kwargs: dict[str, Any] = {}
        if "rd" in strategy.split("+") and options.emphasis == "weighted":
            # RD's "((sharp focus))" marks are real prompt weighting, applied to the text encoder's output
            # (genbench.prompts.weighting); "literal" sends them as text.
            kwargs["weighted"] = True
        if options.max_sequence_length is not None:
            kwargs["max_sequence_length"] = options.max_sequence_length
        if init_image is not None and _ra_ip(options):
            kwargs["ip_adapter_images"] = [inits[m] for m in chunk]
            kwargs["ip_adapter_scale"] = options.ra_ip_scale
        elif init_image is not None:
            kwargs["init_images"] = [inits[m] for m in chunk]
            kwargs["strength"] = options.ra_strength if strategy == "ra" else options.tig_strength
        images = generator.generate([p.text for p in prompts], [p.negative for p in prompts], seeds,
                                    steps=options.steps, guidance_scale=options.guidance_scale,
                                    height=options.resolution, width=options.resolution, **kwargs)
        for (cls, shot), prompt, seed, image in zip(chunk, prompts, seeds, images):
            if options.image_size and image.size != (options.image_size, options.image_size):
                image = image.resize((options.image_size, options.image_size), Image.LANCZOS)
            meta = {
                "dataset": spec.name,
                "source": "generated",
                "class_name": spec.classes[cls],
                "prompt": prompt.text,
                "negative_prompt": prompt.negative,
                "seed": seed,
                "generator": options.generator,
                "strategy": strategy,
                **named.get((cls, shot), {}),
                **({"adaptation": options.adapt_id} if options.adapt_id else {}),
            }
            samples.append(Sample(cls, shot, encode_image(image, options.image_format, options.jpeg_quality),
                                  options.image_format, meta, txt=prompt.text))
    position = {m: i for i, m in enumerate(members)}
    samples.sort(key=lambda smp: position[(smp.cls, smp.shot)])  # per-class batches: back to the shard's order
    return out


def _batches(members: list[tuple[int, int]], options: GeneratedSpec) -> list[list[tuple[int, int]]]:
    """Micro-batches of ``options.batch_size`` in the shard's order; of one class each under per-class LoRA."""
    size = options.batch_size
    if options.adapt is not None and options.adapt.method == "lora" and options.adapt.scope == "class":
        by_class: dict[int, list[tuple[int, int]]] = {}
        for m in members:
            by_class.setdefault(m[0], []).append(m)
        return [group[i : i + size] for group in by_class.values() for i in range(0, len(group), size)]
    return [members[i : i + size] for i in range(0, len(members), size)]


def _naming(spec: Any, cls: int, text: str | None) -> Any:
    """The dataset spec with class ``cls`` named ``text`` (the others unchanged), for one sample's prompt."""
    if text is None or text == spec.classes[cls]:
        return spec
    return replace(spec, classes=spec.classes[:cls] + (text,) + spec.classes[cls + 1 :])
