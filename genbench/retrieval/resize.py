"""Resizing retrieved images the way img2dataset does, with OpenCV.

Users who download LAION subsets with img2dataset know its resize modes; a retrieved collection with ``resize_mode``
set gives the same pixels for the same image and settings (tests/test_img2dataset.py compares the two):

- ``no``: the image as it is;
- ``keep_ratio``: the shorter side becomes ``size``;
- ``center_crop``: the shorter side becomes ``size``, then the centre ``size`` x ``size`` square is kept;
- ``keep_ratio_largest``: the longer side becomes ``size``;
- ``border``: the longer side becomes ``size``, then white borders pad it to ``size`` x ``size``.

Shrinking uses area interpolation and enlarging Lanczos, img2dataset's defaults; with ``only_if_bigger`` an image that
is already small enough is left as it is. Transparent pixels are composited over white.

img2dataset itself cannot be imported beside genbench (its releases that honour X-Robots-Tag pin webdataset<0.3 and
pandas<3; genbench pins webdataset 1.0.2 and pandas 3.1.1), so this is our implementation of its documented behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESIZE_MODES = ("no", "keep_ratio", "center_crop", "keep_ratio_largest", "border")
INTERPOLATIONS = ("nearest", "linear", "cubic", "area", "lanczos")


@dataclass(frozen=True)
class Resizer:
    size: int
    mode: str = "center_crop"
    only_if_bigger: bool = False
    downscale: str = "area"
    upscale: str = "lanczos"

    def __call__(self, data: bytes) -> np.ndarray:
        """The image in ``data`` (any format OpenCV decodes), resized: an RGB uint8 array (H, W, 3)."""
        import cv2

        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError("not an image OpenCV can decode")
        img = _bgr(img)
        if self.mode == "no":
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        by_shorter = self.mode in ("keep_ratio", "center_crop")
        side = min(h, w) if by_shorter else max(h, w)
        shrink = side > self.size
        if shrink or not self.only_if_bigger:
            scale = self.size / side
            if scale != 1.0:
                # Python's round, as img2dataset's resize transforms compute the new sides.
                new_h, new_w = round(h * scale), round(w * scale)
                interpolation = _cv2_flag(self.downscale if shrink else self.upscale)
                img = cv2.resize(img, (new_w, new_h), interpolation=interpolation)
            if self.mode == "center_crop":
                img = _center_crop(img, self.size)
            elif self.mode == "border":
                img = _pad_white(img, self.size)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _bgr(img: np.ndarray) -> np.ndarray:
    """Any decoded image as 3-channel uint8 BGR; alpha composited over white."""
    import cv2

    if img.dtype != np.uint8:  # 16-bit PNGs and the like
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(1.0, float(np.iinfo(img.dtype).max)))
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float64)
        mixed = alpha / 255 * img[:, :, :3] + 255 - alpha
        return np.rint(mixed.clip(0, 255)).astype(np.uint8)
    return img


def _center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[top:top + size, left:left + size]


def _pad_white(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    top, left = max(0, (size - h) // 2), max(0, (size - w) // 2)
    bottom, right = max(0, size - h - top), max(0, size - w - left)
    return cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(255, 255, 255))


def _cv2_flag(name: str) -> int:
    import cv2

    return {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
            "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}[name]
