"""Loaders: a catalog entry plus ``data_root`` -> :class:`SplitData`. Loaders read what is on disk and never download."""

from __future__ import annotations

import importlib

from genbench.catalog.loaders.base import SplitData
from genbench.catalog.spec import DatasetSpec
from genbench.errors import UsageError

# loader kind -> module with a ``load(spec, split, data_root) -> SplitData`` function.
_KINDS = {
    "sklearn_digits": "genbench.catalog.loaders.digits",
    # on-disk datasets: the kind is the preferred layout; ondisk.load also tries the other accepted layouts.
    "torchvision": "genbench.catalog.loaders.ondisk",
    "imagefolder": "genbench.catalog.loaders.ondisk",
    "webdataset": "genbench.catalog.loaders.ondisk",
    "manifest": "genbench.catalog.loaders.ondisk",
}

__all__ = ["SplitData", "load_split", "loader_kinds"]


def loader_kinds() -> tuple[str, ...]:
    return tuple(sorted(_KINDS))


def load_split(spec: DatasetSpec, split: str, data_root: str | None = None) -> SplitData:
    """Open ``split`` ("train" or "test") of ``spec`` under ``data_root``; a missing dataset raises DatasetNotFound."""
    if split not in ("train", "test"):
        raise UsageError("split", split, ("train", "test"))
    kind = spec.loader["kind"]
    if kind not in _KINDS:
        raise UsageError(f"catalog[{spec.name}].loader.kind", kind, loader_kinds())
    module = importlib.import_module(_KINDS[kind])
    return module.load(spec, split, data_root)
