"""Fréchet distance against an independent implementation (scipy's complex sqrtm), Inception FID plumbing on a random
-init network saved as safetensors, and CLIP score (kept here: it is the other feature-similarity measure)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from genbench.errors import UsageError
from genbench.metrics.clipscore import clip_score
from genbench.metrics.frechet import FeatureStats, feature_stats, frechet_distance, frechet_distance_features


def _fd_scipy(x: np.ndarray, y: np.ndarray) -> float:
    # The textbook route (pytorch-fid's): sqrtm of the non-symmetric product, real part of its trace.
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def _clip_like(rng, n, d, shift=0.0):
    x = rng.normal(size=(n, d)) + shift
    x[:, : d // 4] *= 3.0  # anisotropic, like real embeddings
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("seed,d", [(0, 16), (1, 64), (2, 128)])
def test_fd_matches_scipy_sqrtm(seed, d):
    rng = np.random.default_rng(seed)
    x = _clip_like(rng, 2000, d)
    y = _clip_like(rng, 1500, d, shift=0.3)
    ours = frechet_distance_features(x, y)
    ref = _fd_scipy(x.astype(np.float64), y.astype(np.float64))
    assert ours == pytest.approx(ref, rel=1e-4)
    assert ours > 1e-3


def test_fd_closed_form_diagonal_gaussians():
    # Diagonal covariances commute: FD = |mu1-mu2|^2 + sum (a + b - 2 sqrt(a b)) = |mu1-mu2|^2 + sum (sqrt a - sqrt b)^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = (1 + 0 + 4) + (1 + 1 + 0)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_fd_of_a_set_with_itself_is_zero_even_rank_deficient():
    rng = np.random.default_rng(3)
    x = _clip_like(rng, 100, 256)  # fewer samples than dimensions: singular covariance
    assert frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-8)


def test_low_rank_path_equals_covariance_path():
    # Fewer samples than dimensions: the feature-space SVD route and the covariance route (singular S1 -> symmetric
    # square root fallback) are two different computations of the same number.
    rng = np.random.default_rng(8)
    x, y = _clip_like(rng, 60, 96), _clip_like(rng, 40, 96, shift=0.2)
    via_features = frechet_distance_features(x, y)
    via_stats = frechet_distance(*feature_stats(x), *feature_stats(y))
    assert via_features == pytest.approx(via_stats, rel=1e-6)
    assert via_features > 1e-3


def test_streaming_stats_equal_one_shot():
    rng = np.random.default_rng(4)
    x = _clip_like(rng, 3000, 32) + 5.0  # a large offset tests the shifted one-pass covariance
    mu, cov = feature_stats(np.array_split(x, 7))
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x.astype(np.float64), rowvar=False), atol=1e-9)
    with pytest.raises(UsageError):
        FeatureStats().update(x[:5]).update(x[:5, :8])


def test_fd_rejects_mismatched_dimensions():
    rng = np.random.default_rng(5)
    with pytest.raises(UsageError):
        frechet_distance_features(_clip_like(rng, 50, 8), _clip_like(rng, 50, 16))


def test_inception_fid_needs_local_weights(tmp_path):
    from genbench.metrics.frechet import inception_fid

    with pytest.raises(UsageError) as err:
        inception_fid([], [], tmp_path / "missing.safetensors")
    assert err.value.field == "inception_weights"
    with pytest.raises(UsageError):
        inception_fid([], [], None)


def test_inception_fid_runs_on_local_safetensors(tmp_path):
    import torchvision
    from PIL import Image
    from safetensors.torch import save_file

    from genbench.metrics.frechet import inception_features, inception_fid, load_inception

    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    rng = np.random.default_rng(6)
    # Two images a side at Inception's minimum input size keep this CPU test short (299x299 is ~6 GFLOPs an image);
    # the weights path, loading, preprocessing and feature shape are the same as at 299.
    imgs_a = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)) for _ in range(2)]
    imgs_b = [Image.fromarray(np.full((40, 40, 3), 60 * i, dtype=np.uint8)) for i in range(2)]
    feats = inception_features(imgs_a, load_inception(path, "cpu"), batch_size=2, image_size=75)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    fid = inception_fid(imgs_a, imgs_b, path, device="cpu", image_size=75)
    assert np.isfinite(fid) and fid > 0


def test_clip_score_is_100_mean_rowwise_cosine():
    rng = np.random.default_rng(7)
    img, txt = rng.normal(size=(50, 12)), rng.normal(size=(50, 12))
    cos = [np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in zip(img, txt)]
    assert clip_score(img, txt) == pytest.approx(100 * np.mean(cos))
    assert clip_score(img, 3 * img) == pytest.approx(100.0)
    assert clip_score(img, -img) == pytest.approx(-100.0)
    with pytest.raises(UsageError):
        clip_score(img, txt[:10])
