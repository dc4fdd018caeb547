"""Original data: k shots per class from the dataset's own train split, seeded and nested.

Each class's training indices are put in one seeded order; shot j is the j-th image of that order. So the 5-shot set
is the first 5 of the 10-shot set, and a class with fewer than k images gives all it has (the rest is a shortfall).
"""

from __future__ import annotations

import numpy as np

from genbench.catalog.loaders.base import SplitData
from genbench.seeds import sample_seed
from genbench.shards.schema import Sample, encode_image


def class_order(split: SplitData, dataset: str, cls: int, run_seed: int, _cache: dict | None = None) -> np.ndarray:
    """The seeded order of class ``cls``'s training indices (shot j = element j)."""
    key = (id(split), dataset, cls, run_seed)
    if _cache is not None and key in _cache:
        return _cache[key]
    per_class = split.class_indices()
    members = per_class[cls] if cls < len(per_class) else np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(sample_seed(run_seed, dataset, cls, 0, purpose="kshot-order"))
    order = members[rng.permutation(len(members))]
    if _cache is not None:
        _cache[key] = order
    return order


def produce(
    split: SplitData,
    dataset: str,
    class_names: tuple[str, ...],
    members: list[tuple[int, int]],
    run_seed: int,
    image_format: str = "png",
    quality: int = 95,
    order_cache: dict | None = None,
) -> tuple[list[Sample], list[tuple[int, int]]]:
    """Samples for the (class, shot) slots in ``members``; slots past a class's supply are returned as shortfall."""
    samples, short = [], []
    for cls, shot in members:
        order = class_order(split, dataset, cls, run_seed, order_cache)
        if shot >= len(order):
            short.append((cls, shot))
            continue
        idx = int(order[shot])
        meta = {
            "dataset": dataset,
            "source": "original",
            "class_name": class_names[cls],
            "split": split.split,
            "original": split.ref(idx),
        }
        samples.append(Sample(cls, shot, encode_image(split.image(idx), image_format, quality), image_format, meta))
    return samples, short
