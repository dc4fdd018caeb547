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


def retrieved_shots(uri: str, storage_options: dict[str, Any], num_classes: int, cls: int,
                    shots: int) -> list[tuple[Image.Image, dict[str, Any]]]:
    """Class ``cls``'s images among the first ``shots`` shots of the retrieved collection at ``uri``, with each
    sample's json (its caption, URL), in shot order."""
    from genbench.shards.reader import read_selected
    from genbench.shards.schema import decode_image, sample_key
    from genbench.shards.store import Store
    from genbench.sources.augment import retrieved_pool

    store = Store(uri, storage_options)
    present = retrieved_pool(store, num_classes, shots).get(cls, {})
    wanted: dict[str, set[str]] = {}
    for shot, shard in present.items():
        wanted.setdefault(shard, set()).add(sample_key(cls, shot))
    samples = {}
    for shard in sorted(wanted):
        samples.update(read_selected(store, shard, wanted[shard]))
    out = []
    for shot in sorted(present):
        sample = samples.get(sample_key(cls, shot))
        if sample is not None:
            out.append((decode_image(sample.image), dict(sample.meta)))
    return out
