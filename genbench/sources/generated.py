"""Generated data: text-to-image samples for (class, shot) slots under a prompt strategy, one seed per sample."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from PIL import Image

from genbench import validate
from genbench.errors import UsageError
from genbench.models import refs
from genbench.prompts import (
    CE_DEFAULT_REF,
    STRATEGIES,
    make_prompt,
    parse_strategy,
    tig_init_index,
)
from genbench.seeds import sample_seed
from genbench.shards.schema import IMAGE_FORMATS, Sample, encode_image
from genbench.sources.base import CheckContext, ShardSamples, Source, SourceSpec, option


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


@dataclass(frozen=True, kw_only=True)
class GeneratedSpec(SourceSpec):
    """A text-to-image generator under one or more prompt strategies; each strategy makes its own collection."""

    generator: str = option(check=validate.texts("a model reference: " + refs.ALLOWED_GENERATOR), token="", always=True,
                            help="'tiny', 'null', random:<config>, a hub id or a local diffusers directory")
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
    ce_model: str = option(CE_DEFAULT_REF, validate.texts("a T5 model reference: 'tiny', a hub id or a local directory"),
                           token="ce-{}", always=True, when=_is("ce"))
    tig_strength: float = option(0.75, validate.nums(0.0, 1.0, lo_open=True), token="tig{}", always=True, when=_is("tig"))
    tig_shots: int = option(16, validate.ints(1, 1_000_000), token="tigk{}", always=True, when=_is("tig"))

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

    def validate(self, where: str, datasets: tuple[str, ...]) -> None:
        for ds, _ in self.per_dataset:
            if ds not in datasets:
                raise UsageError(f"{where}.per_dataset.{ds}", ds, "a dataset listed in 'datasets'")
        uses_tig = "tig" in self.strategies or any("tig" in s for _, s in self.per_dataset)
        if uses_tig and int(self.steps * self.tig_strength) < 1:
            # img2img runs only the last steps * strength steps: zero of them is an empty run.
            raise UsageError(f"{where}.tig_strength", self.tig_strength, f"at least 1/steps = {1 / self.steps:.3g}")


class GeneratedSource(Source):
    kind = "generated"
    spec_type = GeneratedSpec

    def check(self, spec: GeneratedSpec, where: str, ctx: CheckContext) -> None:
        refs.check_generator(spec.generator, f"{where}.generator")

    def needs_train_split(self, spec: GeneratedSpec) -> bool:
        return spec.strategy == "tig"  # img2img starts from k-shot originals

    def untrained(self, spec: GeneratedSpec) -> list[str]:
        found = [f"generator {spec.generator}"] if refs.generator_untrained(spec.generator) else []
        return found + (["CE model tiny"] if spec.strategy == "ce" and spec.ce_model == "tiny" else [])

    def _generator(self, job: Any, resources: Any) -> Any:
        spec = job.spec
        return resources.generator(spec.generator, spec.dtype, spec.scheduler, spec.compile, job.cache_dir)

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
        init = _tig_init(job, resources) if spec.strategy == "tig" else None
        return generate_samples(self._generator(job, resources), get_dataset(job.dataset), task.members(),
                                job.run_seed, spec, enhancer=enhancer, init_image=init)


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


def generate_samples(generator: Any, spec: Any, members: list[tuple[int, int]], run_seed: int, options: GeneratedSpec,
                     enhancer: Any = None, init_image: Callable[[int, int], Image.Image] | None = None) -> ShardSamples:
    """Generate the samples of ``members`` in micro-batches of ``options.batch_size``.

    The batches depend only on the shard's slots, never on the worker, so a retried shard is made the same way.
    ``init_image(cls, shot)`` supplies the original image that initialises a sample (TIG), else None; a slot whose
    original cannot be read is skipped (counted, logged, in the shortfall).
    """
    strategy = options.strategy
    out = ShardSamples([])
    inits: dict[tuple[int, int], Image.Image] = {}
    if init_image is not None:
        for slot in members:
            try:
                inits[slot] = init_image(*slot)
            except Exception as exc:  # an unreadable original
                out.skip(slot, f"the original image initialising {slot}", exc)
        members = [m for m in members if m in inits]
    samples = out.samples
    for start in range(0, len(members), options.batch_size):
        chunk = members[start : start + options.batch_size]
        prompts = [make_prompt(strategy, spec, c, k, run_seed, enhancer=enhancer) for c, k in chunk]
        seeds = [sample_seed(run_seed, spec.name, c, k) for c, k in chunk]
        kwargs: dict[str, Any] = {}
        if "rd" in strategy.split("+"):
            # RD's "((class))" is real prompt weighting, applied to the text encoder's output (genbench.prompts.weighting).
            kwargs["weighted"] = True
        if init_image is not None:
            kwargs["init_images"] = [inits[m] for m in chunk]
            kwargs["strength"] = options.tig_strength
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
            }
            samples.append(Sample(cls, shot, encode_image(image, options.image_format, options.jpeg_quality),
                                  options.image_format, meta))
    return out
