"""The images an adaptation learns from: a class's first k original shots, in the k-shot source's own order (so TI on
5 shots sees exactly the images of the 5-shot original collection), or the first k images of a retrieved collection
of the run, filtered (:mod:`genbench.adapt.filtering`)."""

from __future__ import annotations

from typing import Any

from PIL import Image

from genbench.catalog.loaders import SplitData
from genbench.sources.original import class_order


def original_shots(split: SplitData, class_names: tuple[str, ...], cls: int, shots: int,
                   run_seed: int) -> list[Image.Image]:
    """Class ``cls``'s first ``shots`` images of the train ``split`` (fewer if the class has fewer, none if it has
    none: the caller's ``on_empty`` policy decides). The caller opens the split once for all classes."""
    order = class_order(split, split.dataset, cls, run_seed)[:shots]
    return [split.image(int(i)) for i in order]


# A worker reads a retrieved collection's references of every class at once (each shard once) when there are at most
# this many; above it (ImageNet at 100 candidates), class by class, keeping memory bounded.
MAX_READ_AT_ONCE = 20_000


def retrieved_samples(uri: str, storage_options: dict[str, Any], num_classes: int, shots: int,
                      classes: set[int] | None = None) -> dict[int, list[Any]]:
    """class -> its samples (:class:`genbench.shards.schema.Sample`, encoded) among the first ``shots`` shots of the
    retrieved collection at ``uri``, in shot order, for ``classes`` (None: every class); each shard is read once."""
    from genbench.shards.reader import read_selected
    from genbench.shards.schema import sample_key
    from genbench.shards.store import Store
    from genbench.sources.augment import retrieved_pool

    store = Store(uri, storage_options)
    wanted: dict[str, set[str]] = {}
    for cls, by_shot in retrieved_pool(store, num_classes, shots).items():
        if classes is None or cls in classes:
            for shot, shard in by_shot.items():
                wanted.setdefault(shard, set()).add(sample_key(cls, shot))
    out: dict[int, list[Any]] = {}
    for shard in sorted(wanted):
        for sample in read_selected(store, shard, wanted[shard]).values():
            out.setdefault(sample.cls, []).append(sample)
    for found in out.values():
        found.sort(key=lambda smp: smp.shot)
    return out


def decoded(samples: list[Any]) -> list[Image.Image]:
    from genbench.shards.schema import decode_image

    return [decode_image(smp.image) for smp in samples]
