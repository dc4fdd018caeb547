"""What every loader returns: a split of a dataset as random-access images with labels."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from PIL import Image


class SplitData(ABC):
    """One split (train or test) of a dataset on disk.

    ``labels`` is int64 of shape (N,) for multi-class data, or 0/1 uint8 of shape (N, C) for multi-label data.
    ``image(i)`` returns an RGB PIL image; ``ref(i)`` says where sample ``i`` came from (stored in shard json);
    ``fingerprint`` changes when the data changes, and is part of every cache key built on this split.
    """

    dataset: str
    split: str

    @property
    @abstractmethod
    def labels(self) -> np.ndarray: ...

    @abstractmethod
    def image(self, i: int) -> Image.Image: ...

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def ref(self, i: int) -> dict[str, Any]:
        return {"index": int(i)}

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(f"{self.dataset}/{self.split}/{len(self)}".encode())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()[:16]

    def class_indices(self) -> list[np.ndarray]:
        """Per class, the sample indices whose label includes that class, in ascending order (computed once)."""
        cached = getattr(self, "_class_indices_cache", None)
        if cached is not None:
            return cached
        lab = self.labels
        if lab.ndim == 1:
            n_cls = int(lab.max()) + 1 if len(lab) else 0
            order = np.argsort(lab, kind="stable")  # one sort instead of a scan per class
            bounds = np.searchsorted(lab[order], np.arange(n_cls + 1))
            out = [order[bounds[c] : bounds[c + 1]] for c in range(n_cls)]
        else:
            out = [np.flatnonzero(lab[:, c]) for c in range(lab.shape[1])]
        self._class_indices_cache = out
        return out
