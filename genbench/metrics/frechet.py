"""Fréchet distance between two feature sets, each summarised by a Gaussian (mean, covariance), in float64:

    FD = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

On CLIP features this is what the paper's code calls FID (``fd_clip``); on Inception pool features it is FID proper.
tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric PSD matrix
R^T S2 R with R R^T = S1 (same eigenvalues as S1 S2): symmetric decompositions only, no complex sqrtm and no
"imaginary component" fix-ups for nearly singular covariances (e.g. fewer samples than dimensions).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from genbench.errors import UsageError

log = logging.getLogger(__name__)


class FeatureStats:
    """Streaming mean and covariance (float64) of feature batches, so nothing but O(D^2) is held.

    Sums are taken around the first batch's mean (a shift), which keeps the one-pass covariance accurate.
    """

    def __init__(self) -> None:
        self.n = 0
        self._shift: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    def update(self, batch: np.ndarray) -> "FeatureStats":
        x = np.asarray(batch, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            return self
        if self._shift is None:
            self._shift = x.mean(axis=0)
            self._sum = np.zeros(x.shape[1])
            self._outer = np.zeros((x.shape[1], x.shape[1]))
        elif x.shape[1] != len(self._shift):
            raise UsageError("features", f"dimension {x.shape[1]}", f"dimension {len(self._shift)} like earlier batches")
        xc = x - self._shift
        self._sum += xc.sum(axis=0)
        self._outer += xc.T @ xc
        self.n += len(x)
        return self

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise UsageError("features", f"{self.n} sample(s)", "at least 2 samples for a covariance")
        m = self._sum / self.n
        cov = (self._outer - self.n * np.outer(m, m)) / (self.n - 1)
        return m + self._shift, cov


def feature_stats(x: np.ndarray | Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of an (N, D) array or of an iterable of (n_i, D) batches."""
    acc = FeatureStats()
    if isinstance(x, np.ndarray):
        acc.update(x)
    else:
        for batch in x:
            acc.update(batch)
    return acc.mean_cov()


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((s + s.T) / 2.0)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) = sum sqrt(eig(R^T S2 R)) for any R with R R^T = S1.

    Cholesky gives R in D^3/3 flops and then only eigenvalues are needed (no eigenvectors), several times faster at
    D = 2048 than a symmetric square root; a singular S1 (fewer samples than dimensions) falls back to R = S1^(1/2).
    """
    try:
        r = np.linalg.cholesky(s1)
    except np.linalg.LinAlgError:
        r = _sqrt_psd(s1)
    m = r.T @ s2 @ r
    eig = np.linalg.eigvalsh((m + m.T) / 2.0)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    s1, s2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise UsageError("features", f"shapes {mu1.shape}/{s1.shape} vs {mu2.shape}/{s2.shape}", "two feature sets of one dimension")
    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * _trace_sqrt_product(s1, s2))
    return max(fd, 0.0)  # rounding can leave -1e-13 for identical sets


def _frechet_low_rank(x: np.ndarray, y: np.ndarray) -> float:
    """Exact FD when a set has fewer samples than dimensions, from the features themselves: with centred A (n1, D) and
    B (n2, D), S1 = A^T A / (n1-1), S2 = B^T B / (n2-1), and tr((S1 S2)^(1/2)) is the nuclear norm of A B^T divided by
    sqrt((n1-1)(n2-1)) -- an SVD of an n1 x n2 matrix instead of D x D decompositions."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    a, b = a - mu1, b - mu2
    n1, n2 = len(a) - 1, len(b) - 1
    tr_sqrt = float(np.linalg.svd(a @ b.T, compute_uv=False).sum()) / np.sqrt(n1 * n2)
    diff = mu1 - mu2
    fd = float(diff @ diff + (a * a).sum() / n1 + (b * b).sum() / n2 - 2.0 * tr_sqrt)
    return max(fd, 0.0)


def frechet_distance_features(x: np.ndarray | Iterable[np.ndarray], y: np.ndarray | Iterable[np.ndarray]) -> float:
    """Fréchet distance between two feature sets (arrays or iterables of batches)."""
    if isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.ndim == 2 and y.shape[1:] == x.shape[1:]:
        if min(len(x), len(y)) < x.shape[1] and min(len(x), len(y)) >= 2:
            return _frechet_low_rank(x, y)
    return frechet_distance(*feature_stats(x), *feature_stats(y))


# --- Inception FID -------------------------------------------------------------------------------------------------

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def load_inception(weights_path: str | Path | None, device: str | None = None):
    """torchvision's inception_v3 with its classifier removed (2048-d pool features), weights from a local
    safetensors state dict (``inception_weights`` in the config); nothing is downloaded and nothing is unpickled."""
    import torch
    import torchvision
    from safetensors.torch import load_file

    allowed = "a local .safetensors file holding a torchvision inception_v3 state dict"
    if weights_path is None or not Path(weights_path).is_file():
        raise UsageError("inception_weights", None if weights_path is None else str(weights_path), allowed)
    if Path(weights_path).suffix != ".safetensors":
        raise UsageError("inception_weights", str(weights_path), allowed + " (convert .pt/.pth once; we never unpickle)")
    model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    model.load_state_dict(load_file(str(weights_path)))
    model.fc = torch.nn.Identity()
    from genbench.models.device import resolve_device

    return model.eval().to(resolve_device(device))


def inception_features(images: Iterable, model, *, batch_size: int = 32, image_size: int = 299) -> np.ndarray:
    """(N, 2048) pool features of PIL images: resized to 299x299 (bilinear, antialiased), ImageNet-normalised.

    FID is defined at 299; a smaller ``image_size`` (>= 75, Inception's minimum) only serves quick plumbing checks.
    """
    if image_size < 75:
        raise ValueError(f"inception_features(image_size={image_size}): at least 75 (Inception-v3's minimum input); 299 for FID")
    import torch
    from torchvision.transforms.functional import normalize, pil_to_tensor, resize

    dev = next(model.parameters()).device
    feats, batch = [], []

    def flush() -> None:
        x = torch.stack(batch).to(dev)
        with torch.inference_mode():
            feats.append(model(x).double().cpu().numpy())
        batch.clear()

    for img in images:
        t = pil_to_tensor(img.convert("RGB")).float() / 255.0
        t = resize(t, [image_size, image_size], antialias=True)
        batch.append(normalize(t, _IMAGENET_MEAN, _IMAGENET_STD))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not feats:
        raise UsageError("images", "an empty image set", "at least 2 images for FID")
    return np.concatenate(feats)


def inception_fid(
    images_a: Iterable,
    images_b: Iterable,
    weights_path: str | Path | None,
    *,
    batch_size: int = 32,
    device: str | None = None,
    image_size: int = 299,
) -> float:
    """FID between two image sets with Inception-v3 pool features; ``weights_path`` must be a local safetensors file."""
    model = load_inception(weights_path, device)
    fa = inception_features(images_a, model, batch_size=batch_size, image_size=image_size)
    fb = inception_features(images_b, model, batch_size=batch_size, image_size=image_size)
    if min(len(fa), len(fb)) < 2048:
        log.warning("FID from %d and %d images: fewer than 2048 samples, the covariance is rank-deficient", len(fa), len(fb))
    return frechet_distance_features(fa, fb)


def score_fd_clip(inputs: Any) -> float:
    """The metric registry's scorer: Fréchet distance of the external and test CLIP embeddings."""
    return frechet_distance_features(inputs.external().emb.astype(np.float64), inputs.test_emb.astype(np.float64))


def score_fid(inputs: Any) -> float | None:
    """The metric registry's scorer: Inception FID, streaming the external images from the tars and the test images."""
    if inputs.images is None or not inputs.inception_weights:
        return None
    external_images, test_images = inputs.images()
    return inception_fid(external_images, test_images, inputs.inception_weights)
