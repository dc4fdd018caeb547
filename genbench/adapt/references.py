"""The images an adaptation learns from: a class's first k original shots, in the k-shot source's own order, so TI
on 5 shots sees exactly the images of the 5-shot original collection."""

from __future__ import annotations

from PIL import Image

from genbench.catalog import get_dataset
from genbench.catalog.loaders import load_split
from genbench.errors import UsageError
from genbench.sources.original import class_order


def original_shots(dataset: str, cls: int, shots: int, run_seed: int, data_root: str | None = None) -> list[Image.Image]:
    """Class ``cls``'s first ``shots`` training images (fewer if the class has fewer; none is an error naming it)."""
    spec = get_dataset(dataset)
    split = load_split(spec, "train", data_root)
    order = class_order(split, dataset, cls, run_seed)[:shots]
    if len(order) == 0:
        raise UsageError("adapt.shots", shots, f"a class with training images ({dataset} class "
                                               f"{spec.classes[cls]!r} has none)")
    return [split.image(int(i)) for i in order]
