"""Layouts made of image files: ``imagefolder`` (<split>/<class>/*.jpg|png) and ``manifest`` (<split>.csv|.jsonl)."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from genbench.catalog.loaders.base import SplitData
from genbench.catalog.loaders.labels import class_lookup, label_array, many_labels, one_label
from genbench.catalog.spec import DatasetSpec
from genbench.errors import UsageError

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm", ".tif", ".tiff")
# Column names accepted for the image path and the label (the second ones are what Hateful Memes' jsonl files use).
PATH_KEYS = ("path", "img", "image", "file", "filename")
LABEL_KEYS = ("label", "labels", "cls", "class")


class FileSplit(SplitData):
    """A split whose samples are image files; the file list is built on first use, not at construction."""

    def __init__(self, spec: DatasetSpec, split: str, base: Path, layout: str, index_fn):
        self.dataset, self.split, self.layout = spec.name, split, layout
        self._base, self._index_fn = base, index_fn
        self._paths: list[Path] | None = None
        self._labels: np.ndarray | None = None

    def _index(self) -> None:
        if self._paths is None:
            self._paths, self._labels = self._index_fn()

    @property
    def labels(self) -> np.ndarray:
        self._index()
        return self._labels

    @property
    def paths(self) -> list[Path]:
        self._index()
        return self._paths

    def image(self, i: int) -> Image.Image:
        with Image.open(self.paths[i]) as im:
            return im.convert("RGB")

    def ref(self, i: int) -> dict[str, Any]:
        return {"index": int(i), "layout": self.layout, "path": os.path.relpath(self.paths[i], self._base)}

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256(super().fingerprint.encode())
        for p in self.paths:
            st = p.stat()
            h.update(f"{os.path.relpath(p, self._base)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]


def inside_regular_file(path: Path, root: Path) -> bool:
    """Whether ``path`` is (or links to) a regular file whose real path lies under ``root``'s real path: no FIFO, device
    or directory, nothing a link reaches outside the dataset."""
    try:
        real = Path(os.path.realpath(path))
        real_root = Path(os.path.realpath(root))
        return (real == real_root or real_root in real.parents) and stat.S_ISREG(os.stat(real).st_mode)
    except OSError:
        return False


# ---- imagefolder ------------------------------------------------------------------------------------------------


def imagefolder_dir(spec: DatasetSpec, root: Path, split: str) -> Path:
    return root / spec.name / spec.splits.get(split, split)


def imagefolder_present(spec: DatasetSpec, root: Path, split: str) -> bool:
    # Class folders hold single labels, so a multi-label dataset cannot use this layout.
    return not spec.multilabel and imagefolder_dir(spec, root, split).is_dir()


def _folder_class(spec: DatasetSpec, name: str, lookup: dict[str, int], where: str) -> int:
    if name in lookup:
        return lookup[name]
    if name.isdigit():
        return one_label(spec, int(name), where)
    raise UsageError(where, name, f"class folders named by a class name or index of {spec.name}")


def open_imagefolder(spec: DatasetSpec, root: Path, split: str) -> FileSplit:
    folder = imagefolder_dir(spec, root, split)

    def index():
        lookup = class_lookup(spec)
        paths, labels = [], []
        skipped = 0
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if not entry.is_dir(follow_symlinks=False):  # a linked class folder could lead anywhere: not walked
                skipped += entry.is_symlink()
                continue
            cls = _folder_class(spec, entry.name, lookup, f"{folder}/{entry.name}")
            for dirpath, _dirs, names in sorted(os.walk(entry.path)):  # os.walk does not follow linked folders
                for n in sorted(names):
                    if not n.lower().endswith(IMAGE_EXTS):
                        continue
                    if inside_regular_file(Path(dirpath) / n, folder):
                        paths.append(Path(dirpath) / n)
                        labels.append(cls)
                    else:
                        skipped += 1
        if skipped:
            log.warning("%s: skipped %d linked folder(s) or file(s) that are not regular files inside %s",
                        spec.name, skipped, folder)
        return paths, label_array(spec, labels)

    return FileSplit(spec, split, folder, "imagefolder", index)


# ---- manifest ---------------------------------------------------------------------------------------------------


def manifest_file(spec: DatasetSpec, root: Path, split: str) -> Path | None:
    stem = root / spec.name / spec.splits.get(split, split)
    for ext in (".csv", ".jsonl"):
        if stem.with_name(stem.name + ext).is_file():
            return stem.with_name(stem.name + ext)
    return None


def _rows(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError(f"line {n} is not a JSON object")
                    rows.append(row)
        return rows
    except (ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(str(path), type(exc).__name__, f"a UTF-8 {path.suffix[1:]} manifest ({str(exc)[:120]})") from None


def _pick(row: dict[str, Any], keys: tuple[str, ...], where: str) -> Any:
    for k in keys:
        if k in row and row[k] not in (None, ""):
            return row[k]
    raise UsageError(where, sorted(row), f"a row with one of the columns {', '.join(keys)}")


def open_manifest(spec: DatasetSpec, root: Path, split: str) -> FileSplit:
    path = manifest_file(spec, root, split)

    def index():
        lookup = class_lookup(spec)
        paths, labels = [], []
        for n, row in enumerate(_rows(path)):
            where = f"{path}:{n + 2 if path.suffix == '.csv' else n + 1}"
            rel = str(_pick(row, PATH_KEYS, where))
            if os.path.isabs(rel) or ".." in Path(rel).parts or "\x00" in rel:
                raise UsageError(where, rel, f"an image path relative to {path.parent}, without '..'")
            if not inside_regular_file(path.parent / rel, path.parent):
                raise UsageError(where, rel, f"a regular image file inside {path.parent}")
            paths.append(path.parent / rel)
            value = _pick(row, LABEL_KEYS, where)
            labels.append(many_labels(spec, value, where, lookup) if spec.multilabel else one_label(spec, value, where, lookup))
        return paths, label_array(spec, labels)

    return FileSplit(spec, split, path.parent, "manifest", index)
