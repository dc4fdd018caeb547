"""The ``torchvision`` layout: the files torchvision's dataset classes read, opened with ``download=False``.

Catalog options (``loader`` in the YAML): ``class`` (torchvision.datasets class name), ``marker`` (a path under
data_root/<name> whose presence means the layout is there; checked without opening anything), ``split_kwargs``
(per split, the constructor arguments that select it), ``kwargs`` (constant arguments), ``per_class_split``
(``{train: n}`` or ``{test: n}`` plus ``seed``, for classes without a split argument) and ``label_offset``
(added to torchvision's label, e.g. Caltech-101 where torchvision drops the background class).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from genbench.catalog.loaders.base import SplitData
from genbench.catalog.loaders.labels import class_lookup, label_array
from genbench.catalog.spec import DatasetSpec
from genbench.errors import UsageError

log = logging.getLogger(__name__)


def tv_root(spec: DatasetSpec, root: Path) -> Path:
    return root / spec.name


def torchvision_present(spec: DatasetSpec, root: Path, split: str) -> bool:
    opts = spec.loader
    return opts.get("kind") == "torchvision" and (tv_root(spec, root) / opts["marker"]).exists()


def per_class_rows(labels: np.ndarray, split: str, rule: dict[str, Any]) -> np.ndarray:
    """Deterministic per-class split of a dataset that torchvision does not split: a seeded permutation per class,
    the first ``n`` of which form the named side (``train`` or ``test``), the rest the other side."""
    side = "train" if "train" in rule else "test"
    n, seed = int(rule[side]), int(rule.get("seed", 0))
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        perm = idx[np.random.default_rng([seed, int(c)]).permutation(len(idx))]
        keep.append(perm[:n] if split == side else perm[n:])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def _targets(ds) -> np.ndarray:
    """Labels without decoding images, from the attribute each torchvision class keeps them in."""
    for attr in ("targets", "_labels", "y", "labels"):
        if hasattr(ds, attr) and getattr(ds, attr) is not None:
            return np.asarray(getattr(ds, attr), dtype=np.int64).reshape(-1)
    if hasattr(ds, "_samples"):
        return np.asarray([s[1] for s in ds._samples], dtype=np.int64)
    log.info("%s keeps no label list; reading every sample once for its label", type(ds).__name__)
    return np.asarray([ds[i][1] for i in range(len(ds))], dtype=np.int64)


def _voc_labels(spec: DatasetSpec, ds) -> np.ndarray:
    lookup = class_lookup(spec)
    rows = []
    for ann in ds.annotations:
        names = {obj.findtext("name").strip() for obj in ET.parse(ann).getroot().iter("object")}
        try:
            rows.append(sorted(lookup[n] for n in names))
        except KeyError as e:
            raise UsageError(f"{ann}:object.name", e.args[0], spec.classes) from None
    return label_array(spec, rows)


class TorchvisionSplit(SplitData):
    """A torchvision dataset behind the SplitData interface; the dataset object is built on first use."""

    def __init__(self, spec: DatasetSpec, split: str, root: Path):
        self.dataset, self.split, self._spec, self._root = spec.name, split, spec, tv_root(spec, root)
        self._ds = None
        self._rows: np.ndarray | None = None
        self._labels: np.ndarray | None = None

    def _build(self):
        if self._ds is not None:
            return self._ds
        import torchvision.datasets as tvd

        opts = self._spec.loader
        cls = getattr(tvd, opts["class"], None)
        if cls is None:
            raise UsageError(f"catalog[{self.dataset}].loader.class", opts["class"], "a torchvision.datasets class")
        kwargs = dict(opts.get("kwargs", {}))
        kwargs.update(opts.get("split_kwargs", {}).get(self.split, {}))
        if "download" in inspect.signature(cls.__init__).parameters:
            kwargs["download"] = False  # genbench never downloads during a run
        try:
            ds = cls(str(self._root), **kwargs)
        except ImportError as e:  # e.g. PCAM needs h5py
            raise UsageError(f"dataset {self.dataset!r} (torchvision layout)", str(e), "the package torchvision needs for it installed") from e
        except RuntimeError as e:
            # torchvision's "not found or corrupted": a file is missing or fails its published checksum.
            raise UsageError(
                f"dataset {self.dataset!r} (torchvision {opts['class']} layout at {self._root})",
                str(e).splitlines()[0] if str(e) else type(e).__name__,
                f"the unmodified files torchvision.datasets.{opts['class']} reads (it verifies them); data from {self._spec.origin}",
            ) from e
        if self._spec.multilabel:
            labels = _voc_labels(self._spec, ds)
        else:
            labels = _targets(ds) + int(opts.get("label_offset", 0))
        rule = opts.get("per_class_split")
        rows = per_class_rows(labels, self.split, rule) if rule else np.arange(len(labels))
        self._ds, self._rows, self._labels = ds, rows, labels[rows]
        return ds

    @property
    def labels(self) -> np.ndarray:
        self._build()
        return self._labels

    def image(self, i: int) -> Image.Image:
        ds = self._build()
        img = ds[int(self._rows[i])][0]
        return img.convert("RGB")

    def ref(self, i: int) -> dict[str, Any]:
        self._build()
        return {"index": int(i), "layout": "torchvision", "torchvision_index": int(self._rows[i])}

    @property
    def fingerprint(self) -> str:
        self._build()
        h = hashlib.sha256(super().fingerprint.encode())
        h.update(self._rows.tobytes())
        marker = self._root / self._spec.loader["marker"]
        st = marker.stat()
        h.update(f"{self._spec.loader['class']}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]


def open_torchvision(spec: DatasetSpec, root: Path, split: str) -> TorchvisionSplit:
    return TorchvisionSplit(spec, split, root)
