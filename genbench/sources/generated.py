"""Generated data: text-to-image samples for (class, shot) slots, one seed per sample, micro-batched."""

from __future__ import annotations

from typing import Any, Callable

from PIL import Image

from genbench.catalog.spec import DatasetSpec
from genbench.seeds import sample_seed
from genbench.shards.schema import Sample, encode_image


def produce(
    generator: Any,
    spec: DatasetSpec,
    members: list[tuple[int, int]],
    run_seed: int,
    strategy: str,
    options: dict[str, Any],
    make_prompt: Callable[..., Any],
    enhancer: Any = None,
    init_image: Callable[[int, int], Image.Image] | None = None,
) -> list[Sample]:
    """Generate the samples of ``members`` in micro-batches of ``options['batch_size']``.

    The batches depend only on the shard's slots, never on the worker, so a retried shard is made the same way.
    ``init_image(cls, shot)`` supplies the original image that initialises a sample (TIG), else None.
    """
    batch = max(1, int(options.get("batch_size", 8)))
    out_size = options.get("image_size")
    fmt, quality = options.get("image_format", "jpg"), int(options.get("jpeg_quality", 95))
    samples: list[Sample] = []
    for start in range(0, len(members), batch):
        chunk = members[start : start + batch]
        prompts = [make_prompt(strategy, spec, c, k, run_seed, enhancer=enhancer) for c, k in chunk]
        seeds = [sample_seed(run_seed, spec.name, c, k) for c, k in chunk]
        kwargs: dict[str, Any] = {}
        if "rd" in strategy.split("+"):
            # RD's "((class))" is real prompt weighting, applied to the text encoder's output (see prompt_weighting).
            kwargs["weighted"] = True
        if init_image is not None:
            kwargs["init_images"] = [init_image(c, k) for c, k in chunk]
            kwargs["strength"] = float(options.get("tig_strength", 0.75))
        images = generator.generate(
            [p.text for p in prompts],
            [p.negative for p in prompts],
            seeds,
            steps=int(options.get("steps", 25)),
            guidance_scale=float(options.get("guidance_scale", 7.5)),
            height=options.get("resolution"),
            width=options.get("resolution"),
            **kwargs,
        )
        for (cls, shot), prompt, seed, image in zip(chunk, prompts, seeds, images):
            if out_size and image.size != (out_size, out_size):
                image = image.resize((out_size, out_size), Image.LANCZOS)
            meta = {
                "dataset": spec.name,
                "source": "generated",
                "class_name": spec.classes[cls],
                "prompt": prompt.text,
                "negative_prompt": prompt.negative,
                "seed": seed,
                "generator": options.get("generator"),
                "strategy": strategy,
            }
            samples.append(Sample(cls, shot, encode_image(image, fmt, quality), fmt, meta))
    return samples
