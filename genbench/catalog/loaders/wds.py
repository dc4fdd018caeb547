"""The ``webdataset`` layout: <split>-*.tar shards with an image file and ``cls`` (or ``json`` labels) per sample.

The label scan streams the shards with the webdataset library; random access to one image then reads that member at
the byte offset recorded by a lazily built per-shard tar index, so nothing but labels is held in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from genbench.catalog.loaders.base import SplitData
from genbench.catalog.loaders.labels import class_lookup, label_array, many_labels, one_label
from genbench.catalog.spec import DatasetSpec
from genbench.errors import UsageError

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff")


def shard_paths(spec: DatasetSpec, root: Path, split: str) -> list[Path]:
    return sorted((root / spec.name).glob(f"{spec.splits.get(split, split)}-*.tar"))


def _label_of(spec: DatasetSpec, sample: dict[str, Any], where: str, lookup: dict[str, int]):
    meta = json.loads(sample["json"]) if "json" in sample else {}
    if spec.multilabel:
        for key in ("labels", "label", "cls"):
            if key in meta:
                return many_labels(spec, meta[key], where, lookup)
        if "cls" in sample:
            return many_labels(spec, sample["cls"].decode(), where, lookup)
        raise UsageError(where, sorted(sample), "a 'json' file with a 'labels' list (multi-label dataset)")
    if "cls" in sample:
        return one_label(spec, sample["cls"].decode(), where, lookup)
    for key in ("cls", "label"):
        if key in meta:
            return one_label(spec, meta[key], where, lookup)
    raise UsageError(where, sorted(sample), "a 'cls' file (class index) or a 'json' file with 'cls'/'label'")


class WebDatasetSplit(SplitData):
    def __init__(self, spec: DatasetSpec, split: str, shards: list[Path]):
        self.dataset, self.split, self._spec, self._shards = spec.name, split, spec, shards
        self._members: list[tuple[int, str]] | None = None  # per sample: (shard number, tar member name of its image)
        self._labels: np.ndarray | None = None
        self._offsets: dict[int, dict[str, tarfile.TarInfo]] = {}

    def _scan(self) -> None:
        if self._members is not None:
            return
        import webdataset as wds

        spec, lookup = self._spec, class_lookup(self._spec)
        shard_no = {str(p): n for n, p in enumerate(self._shards)}
        members, labels = [], []
        urls = [str(p) for p in self._shards]
        # Raw bytes only (no decoding): the scan must not pay for decoding every image.
        for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
            where = f"{sample['__url__']}:{sample['__key__']}"
            ext = next((e for e in IMAGE_KEYS if e in sample), None)
            if ext is None:
                raise UsageError(where, sorted(k for k in sample if not k.startswith("__")), f"an image file ({', '.join(IMAGE_KEYS)})")
            members.append((shard_no[sample["__url__"]], f"{sample['__key__']}.{ext}"))
            labels.append(_label_of(spec, sample, where, lookup))
        self._members, self._labels = members, label_array(spec, labels)

    @property
    def labels(self) -> np.ndarray:
        self._scan()
        return self._labels

    def _member(self, shard: int, name: str) -> tarfile.TarInfo:
        if shard not in self._offsets:
            with tarfile.open(self._shards[shard]) as tf:
                self._offsets[shard] = {m.name: m for m in tf.getmembers() if m.isfile()}
        return self._offsets[shard][name]

    def image(self, i: int) -> Image.Image:
        self._scan()
        shard, name = self._members[i]
        info = self._member(shard, name)
        with open(self._shards[shard], "rb") as f:
            f.seek(info.offset_data)
            data = f.read(info.size)
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")

    def ref(self, i: int) -> dict[str, Any]:
        self._scan()
        shard, name = self._members[i]
        return {"index": int(i), "layout": "webdataset", "shard": self._shards[shard].name, "member": name}

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256(super().fingerprint.encode())
        for p in self._shards:
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]


def open_webdataset(spec: DatasetSpec, root: Path, split: str) -> WebDatasetSplit:
    return WebDatasetSplit(spec, split, shard_paths(spec, root, split))
