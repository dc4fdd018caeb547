"""Finding a dataset under ``data_root`` in any accepted on-disk layout, and opening a split from it.

A catalog entry names its preferred layout (``loader.kind``); every on-disk dataset also accepts the generic layouts, tried
in the order torchvision -> imagefolder -> webdataset -> manifest. Nothing is ever downloaded: when no layout is present
the error says where we looked, what is accepted and where the data comes from.
"""

from __future__ import annotations

import os
from pathlib import Path

from genbench.catalog.loaders.base import SplitData
from genbench.catalog.loaders.files import imagefolder_present, manifest_file, open_imagefolder, open_manifest
from genbench.catalog.loaders.tv import open_torchvision, torchvision_present
from genbench.catalog.loaders.wds import open_webdataset, shard_paths
from genbench.catalog.spec import DatasetSpec
from genbench.errors import DatasetNotFound

ON_DISK = ("torchvision", "imagefolder", "webdataset", "manifest")
DEFAULT_ROOT = "~/data"

_PRESENT = {
    "torchvision": torchvision_present,
    "imagefolder": imagefolder_present,
    "webdataset": lambda spec, root, split: bool(shard_paths(spec, root, split)),
    "manifest": lambda spec, root, split: manifest_file(spec, root, split) is not None,
}
_OPEN = {
    "torchvision": open_torchvision,
    "imagefolder": open_imagefolder,
    "webdataset": open_webdataset,
    "manifest": open_manifest,
}
# What each layout looks like on disk, for the not-found message.
_SHAPES = {
    "imagefolder": "{d}/<split>/<class name or index>/*.jpg|png",
    "webdataset": "{d}/<split>-*.tar (cls or json labels)",
    "manifest": "{d}/<split>.csv|.jsonl (path,label)",
}


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """``data_root`` if given, else $GENBENCH_DATA, else ~/data."""
    if data_root is None:
        data_root = os.environ.get("GENBENCH_DATA") or DEFAULT_ROOT
    return Path(data_root).expanduser()


def layouts_for(spec: DatasetSpec) -> tuple[str, ...]:
    """The layouts ``spec`` accepts, in the order they are tried (empty for built-in datasets such as digits)."""
    if spec.loader["kind"] not in ON_DISK:
        return ()
    order = [k for k in ON_DISK if k != "torchvision" or spec.loader["kind"] == "torchvision"]
    if spec.multilabel:
        order.remove("imagefolder")  # one folder per class cannot express several labels
    return tuple(order)


def describe_layouts(spec: DatasetSpec, root: Path) -> list[str]:
    d = root / spec.name
    out = []
    for layout in layouts_for(spec):
        if layout == "torchvision":
            out.append(f"torchvision {spec.loader['class']} ({d / spec.loader['marker']})")
        else:
            out.append(f"{layout} ({_SHAPES[layout].format(d=d)})")
    return out


def layout_for_split(spec: DatasetSpec, root: Path, split: str) -> str | None:
    """The first of the dataset's accepted layouts present under ``root`` for ``split`` (None: none is); only checks
    that files exist, never opens the split."""
    return next((layout for layout in layouts_for(spec) if _PRESENT[layout](spec, root, split)), None)


def find_layout(spec: DatasetSpec, data_root: str | os.PathLike | None) -> str | None:
    """The layout the test split would be read from, its kind for built-in datasets, or None when it is absent."""
    if spec.loader["kind"] not in ON_DISK:
        return spec.loader["kind"]
    return layout_for_split(spec, resolve_data_root(data_root), "test")


def load(spec: DatasetSpec, split: str, data_root: str | os.PathLike | None) -> SplitData:
    """Open ``split`` from the first layout present; raise DatasetNotFound (one line) when there is none."""
    root = resolve_data_root(data_root)
    layout = layout_for_split(spec, root, split)
    if layout is None:
        raise DatasetNotFound(spec.name, f"{root / spec.name} (split {split!r})", describe_layouts(spec, root), spec.origin)
    return _OPEN[layout](spec, root, split)
