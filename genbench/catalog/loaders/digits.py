"""scikit-learn's bundled 8x8 digits, split deterministically and stratified (no download ever); optionally rotated.

``rotate`` (0, 90, 180 or 270 degrees counter-clockwise) turns every image of both splits and keeps the split: the
``digits-rot`` dataset is the same digits a quarter turn away, a test set the toy models never saw.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from genbench.catalog.loaders.base import SplitData
from genbench.errors import UsageError

ROTATIONS = (0, 90, 180, 270)


@lru_cache(maxsize=4)
def _split_indices(test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    idx = np.arange(len(data.target))
    train, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=data.target)
    # 0..16 grey levels -> 0..255 so the images look like images; the mapping is exact and invertible.
    pixels = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)
    return np.sort(train), np.sort(test), pixels, data.target.astype(np.int64)


class DigitsSplit(SplitData):
    def __init__(self, split: str, test_fraction: float = 0.3, seed: int = 0, rotate: int = 0,
                 dataset: str = "digits"):
        if isinstance(rotate, bool) or not isinstance(rotate, int) or rotate not in ROTATIONS:
            raise UsageError("loader.rotate", rotate, "one of " + ", ".join(map(str, ROTATIONS)))
        train, test, pixels, target = _split_indices(float(test_fraction), int(seed))
        self.dataset, self.split = dataset, split
        self._rows = train if split == "train" else test
        # np.rot90 turns counter-clockwise, as PIL's rotate(90) does; axes (1, 2) are each image's rows and columns.
        self._pixels = np.ascontiguousarray(np.rot90(pixels, k=rotate // 90, axes=(1, 2))) if rotate else pixels
        self._target = target

    @property
    def labels(self) -> np.ndarray:
        return self._target[self._rows]

    def image(self, i: int) -> Image.Image:
        return Image.fromarray(self._pixels[self._rows[i]], mode="L").convert("RGB")

    def pixels(self, i: int) -> np.ndarray:
        """The 8x8 uint8 grey image of sample ``i`` (what tests compare shard pixels against)."""
        return self._pixels[self._rows[i]]

    def ref(self, i: int) -> dict[str, Any]:
        return {"index": int(i), "sklearn_index": int(self._rows[i])}

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256(self._rows.tobytes())
        h.update(self._pixels[self._rows].tobytes())
        return h.hexdigest()[:16]


def load(spec, split: str, data_root: str | None) -> SplitData:
    opts = spec.loader
    return DigitsSplit(split, test_fraction=opts.get("test_fraction", 0.3), seed=opts.get("seed", 0),
                       rotate=opts.get("rotate", 0), dataset=spec.name)
