"""The images an adaptation learns from: a class's first k original shots, in the k-shot source's own order, so TI
on 5 shots sees exactly the images of the 5-shot original collection."""

from __future__ import annotations

from PIL import Image

from genbench.catalog.loaders import SplitData
from genbench.errors import UsageError
from genbench.sources.original import class_order


def original_shots(split: SplitData, class_names: tuple[str, ...], cls: int, shots: int,
                   run_seed: int) -> list[Image.Image]:
    """Class ``cls``'s first ``shots`` images of the train ``split`` (fewer if the class has fewer; none is an error
    naming it). The caller opens the split once for all classes."""
    order = class_order(split, split.dataset, cls, run_seed)[:shots]
    if len(order) == 0:
        raise UsageError("adapt.shots", shots, f"a class with training images ({split.dataset} class "
                                               f"{class_names[cls]!r} has none)")
    return [split.image(int(i)) for i in order]
