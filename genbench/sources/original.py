"""Original data: k shots per class from the dataset's own train split, seeded and nested.

Each class's training indices are put in one seeded order; shot j is the j-th image of that order. So the 5-shot set
is the first 5 of the 10-shot set, and a class with fewer than k images gives all it has (the rest is a shortfall).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from genbench import validate
from genbench.catalog.loaders.base import SplitData
from genbench.seeds import sample_seed
from genbench.shards.schema import IMAGE_FORMATS, Sample, class_caption, encode_image
from genbench.sources.base import CheckContext, ShardSamples, Source, SourceSpec, option


@dataclass(frozen=True, kw_only=True)
class OriginalSpec(SourceSpec):
    # Originals are real images: PNG keeps their pixels exactly.
    image_format: str = option("png", validate.one_of(*IMAGE_FORMATS), token="{}", always=True)
    jpeg_quality: int = option(95, validate.ints(1, 100), token="q{}", always=True)

    def base_name(self) -> str:
        return "kshot"


def class_order(split: SplitData, dataset: str, cls: int, run_seed: int, cache: dict | None = None) -> np.ndarray:
    """The seeded order of class ``cls``'s training indices (shot j = element j)."""
    key = (id(split), dataset, cls, run_seed)
    if cache is not None and key in cache:
        return cache[key]
    per_class = split.class_indices()
    members = per_class[cls] if cls < len(per_class) else np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(sample_seed(run_seed, dataset, cls, 0, purpose="kshot-order"))
    order = members[rng.permutation(len(members))]
    if cache is not None:
        cache[key] = order
    return order


def shot_orders(resources: Any) -> dict:
    """The per-worker cache of class orders (one permutation per class, reused by every shard)."""
    return resources.cached(("kshot-orders",), dict)


def produce_originals(split: SplitData, dataset: str, class_names: tuple[str, ...], members: list[tuple[int, int]],
                      run_seed: int, image_format: str = "png", quality: int = 95,
                      order_cache: dict | None = None, template: str = "a photo of a {}.") -> ShardSamples:
    """Samples for the (class, shot) slots in ``members``; slots past a class's supply are returned as shortfall, and
    so is an image that cannot be read (counted in ``bad``: shot k stays the k-th image of the class's order)."""
    out = ShardSamples([])
    for cls, shot in members:
        order = class_order(split, dataset, cls, run_seed, order_cache)
        if shot >= len(order):
            out.shortfall.append((cls, shot))
            continue
        idx = int(order[shot])
        try:
            pixels = split.image(idx)
        except Exception as exc:  # PIL raises many types for a truncated, empty or hostile file
            out.skip((cls, shot), split.ref(idx), exc)
            continue
        meta = {
            "dataset": dataset,
            "source": "original",
            "class_name": class_names[cls],
            "split": split.split,
            "original": split.ref(idx),
        }
        out.samples.append(Sample(cls, shot, encode_image(pixels, image_format, quality), image_format, meta,
                                  txt=class_caption(template, class_names[cls])))
    return out


class OriginalSource(Source):
    kind = "original"
    spec_type = OriginalSpec

    def check(self, spec: OriginalSpec, where: str, ctx: CheckContext) -> None:
        pass  # the train split is opened by the run's data check (needs_train_split)

    def needs_train_split(self, spec: OriginalSpec) -> bool:
        return True

    def warm(self, job: Any, resources: Any) -> None:
        resources.split(job.dataset, "train", job.data_root)

    def produce(self, task: Any, resources: Any) -> ShardSamples:
        from genbench.catalog import get_dataset

        job, spec = task.job, task.job.spec
        split = resources.split(job.dataset, "train", job.data_root)
        dataset = get_dataset(job.dataset)
        return produce_originals(split, job.dataset, dataset.classes, task.members(), job.run_seed,
                                 spec.image_format, spec.jpeg_quality, shot_orders(resources), dataset.templates[0])
