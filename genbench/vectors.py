"""Unit vectors: every embedding genbench compares is L2-normalised, by this one function."""

from __future__ import annotations

import numpy as np


def normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x`` scaled to unit length along ``axis`` (zero vectors stay zero), in ``x``'s float precision."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, np.asarray(1e-12, dtype=x.dtype))
