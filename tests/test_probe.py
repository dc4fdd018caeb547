"""The torch linear probe against scikit-learn at the same regularisation, and the rules of its search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_blobs
from sklearn.linear_model import LogisticRegression

from genbench.errors import UsageError
from genbench.metrics.probe import fit_logreg, linear_probe, stratified_split


def _norm(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def blobs():
    # Overlapping blobs so that accuracy is well below 100% and the regularisation matters.
    x, y = make_blobs(n_samples=3000, centers=10, n_features=64, cluster_std=14.0, random_state=0)
    x = _norm(x)
    return x[:2000], y[:2000], x[2000:], y[2000:]


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = _norm(d.data + 1.0)  # +1 keeps an all-zero row impossible before normalising
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], d.target[order]
    return x[:1200], y[:1200], x[1200:], y[1200:]


def _sk_accuracy(xtr, ytr, xte, yte, reg):
    # reg = 1 / (C n)  <=>  C = 1 / (reg n): the documented mapping.
    model = LogisticRegression(C=1.0 / (reg * len(xtr)), max_iter=5000, tol=1e-6).fit(xtr, ytr)
    return model.score(xte, yte) * 100, model


@pytest.mark.parametrize("data", ["blobs", "digits"])
@pytest.mark.parametrize("reg", [1e-3, 1e-2])
def test_probe_matches_sklearn_at_same_reg(data, reg, request):
    xtr, ytr, xte, yte = request.getfixturevalue(data)
    w, b = fit_logreg(xtr, ytr, 10, reg, device="cpu")
    acc_torch = np.mean((xte @ w.T + b).argmax(1) == yte) * 100
    acc_sk, model = _sk_accuracy(xtr, ytr, xte, yte, reg)
    assert abs(acc_torch - acc_sk) <= 0.3
    # Same optimum, not just the same accuracy: weights agree closely (float32 vs float64 solvers).
    assert np.abs(w - model.coef_).max() < 0.02 * max(1.0, np.abs(model.coef_).max())
    assert 20 < acc_sk < 100  # a non-trivial problem


def test_float64_and_float32_agree(blobs):
    xtr, ytr, _, _ = blobs
    w32, _ = fit_logreg(xtr, ytr, 10, 1e-3, device="cpu")
    w64, _ = fit_logreg(xtr, ytr, 10, 1e-3, device="cpu", dtype=torch.float64)
    assert np.abs(w32 - w64).max() < 1e-2


def test_multilabel_one_vs_rest_matches_sklearn_binary():
    rng = np.random.default_rng(1)
    n, d, c = 600, 16, 4
    x = _norm(rng.normal(size=(n, d)))
    proj = rng.normal(size=(d, c))
    y = ((x @ proj + 0.3 * rng.normal(size=(n, c))) > 0.2).astype(np.uint8)
    reg = 1e-3
    w, b = fit_logreg(x, y, c, reg, multilabel=True, device="cpu", dtype=torch.float64)
    for k in range(c):
        m = LogisticRegression(C=1.0 / (reg * n), max_iter=5000, tol=1e-10).fit(x, y[:, k])
        np.testing.assert_allclose(w[k], m.coef_[0], atol=2e-3)
        assert b[k] == pytest.approx(m.intercept_[0], abs=2e-3)


def test_multilabel_probe_scores_map():
    rng = np.random.default_rng(2)
    n, d, c = 800, 16, 5
    x = _norm(rng.normal(size=(n, d)))
    y = ((x @ rng.normal(size=(d, c))) > 0.5).astype(np.uint8)
    r = linear_probe(
        x[:500], y[:500], x[500:], y[500:], c, "map_11point", multilabel=True, device="cpu", coarse=(-3, -2), refine_steps=1
    )
    assert r.n_val > 0 and len(r.search) >= 2
    assert r.metric == "map_11point" and r.missing_classes == []
    assert r.score > 80  # a linearly generated labelling is learnt well; chance is the positive rate (~30%)


def test_search_never_uses_test_labels(digits):
    xtr, ytr, xte, yte = digits
    # A shorter grid than the default (1e-6 .. 1e2) keeps the test fast; the search logic is the same.
    kw = dict(seed=3, device="cpu", coarse=(-3, -2, -1), refine_steps=2, max_iter=300, tol=1e-3)
    a = linear_probe(xtr, ytr, xte, yte, 10, "accuracy", **kw)
    perm = np.random.default_rng(9).permutation(len(yte))
    b = linear_probe(xtr, ytr, xte[::-1], yte[perm], 10, "accuracy", **kw)
    assert a.reg == b.reg and a.val_score == b.val_score and a.search == b.search
    assert a.score != b.score  # the test labels did change, only the test score may move
    assert len(a.search) > 4  # coarse grid plus refinement
    regs = [r for r, _ in a.search]
    assert min(regs) <= a.reg <= max(regs)
    assert a.val_score == max(s for _, s in a.search)
    assert a.n_val == pytest.approx(0.2 * len(xtr), abs=10)
    assert a.score > 80


def test_missing_class_is_reported_not_dropped(blobs, caplog):
    xtr, ytr, xte, yte = blobs
    keep = ytr != 7
    r = linear_probe(xtr[keep], ytr[keep], xte, yte, 10, "accuracy", reg=1e-3, device="cpu")
    assert r.missing_classes == [7]
    assert "no external sample" in caplog.text
    # Class 7's test images are all counted as wrong, so the accuracy is capped by the other classes' share.
    assert r.score <= 100 * np.mean(yte != 7) + 1e-9
    assert r.score > 20


def test_stratified_split_is_seeded_and_per_class():
    y = np.repeat(np.arange(5), [10, 20, 1, 5, 40])
    tr1, va1 = stratified_split(y, 0.2, seed=0)
    tr2, va2 = stratified_split(y, 0.2, seed=0)
    tr3, va3 = stratified_split(y, 0.2, seed=1)
    np.testing.assert_array_equal(va1, va2)
    assert not np.array_equal(va1, va3)
    assert set(tr1).isdisjoint(va1) and len(tr1) + len(va1) == len(y)
    assert np.bincount(y[va1], minlength=5).tolist() == [2, 4, 0, 1, 8]  # the 1-shot class stays in train


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_reg_is_usage_error(bad, blobs):
    xtr, ytr, _, _ = blobs
    with pytest.raises(UsageError):
        fit_logreg(xtr, ytr, 10, bad)


def test_unknown_metric_is_usage_error(blobs):
    xtr, ytr, xte, yte = blobs
    with pytest.raises(UsageError):
        linear_probe(xtr, ytr, xte, yte, 10, "f1")


def _anisotropic(classes: int, shots: int, test_shots: int, dim: int, seed: int = 0):
    """Class means plus noise whose variance decays as a power law in a random basis (embeddings' variance sits in a
    few directions), so that the strength matters and the validation curve has a clear best region."""
    rng = np.random.default_rng(seed)
    means = _norm(rng.standard_normal((classes, dim)))
    spec = np.arange(1, dim + 1) ** -0.5
    spec *= np.sqrt(dim / (spec**2).sum())
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0]

    def draw(y):
        return _norm(means[y] + 0.35 * (rng.standard_normal((len(y), dim)) * spec) @ basis)

    y, ty = np.tile(np.arange(classes), shots), np.tile(np.arange(classes), test_shots)
    return draw(y), y, draw(ty), ty


def test_search_agrees_with_the_same_search_by_sklearn():
    """genbench's search walks one warm-started solver along the strengths; the same protocol with scikit-learn fitting
    each strength from scratch must choose a strength within one coarse grid step, and score within 0.3 points."""
    from genbench.metrics.probe import search_reg

    xtr, ytr, xte, yte = _anisotropic(classes=20, shots=30, test_shots=400, dim=48)
    ours = linear_probe(xtr, ytr, xte, yte, 20, "accuracy", device="cpu")

    tr, va = stratified_split(ytr, 0.2, 0)  # linear_probe's own split (seed 0)
    scores: dict[float, float] = {}

    def sk_search(log_reg: float) -> float:
        if round(log_reg, 6) not in scores:
            _, m = _sk_accuracy(xtr[tr], ytr[tr], xtr[va], ytr[va], 10.0**log_reg)
            scores[round(log_reg, 6)] = m.score(xtr[va], ytr[va])
        return scores[round(log_reg, 6)]

    best = search_reg(sk_search)
    sk_acc, _ = _sk_accuracy(xtr, ytr, xte, yte, 10.0**best)
    assert abs(np.log10(ours.reg) - best) <= 1.0
    assert abs(ours.score - sk_acc) <= 0.3
    assert 30 < sk_acc < 95  # the strength matters on this problem
    assert len(ours.search) == len(scores)


def test_warm_started_path_reaches_the_cold_optimum():
    """A fit that starts from another strength's optimum (and its curvature pairs) ends where a fit from zero ends."""
    from genbench.metrics.probe_solver import LogRegPath

    xtr, ytr, _, _ = _anisotropic(classes=10, shots=20, test_shots=1, dim=32, seed=1)
    x, y = torch.as_tensor(xtr, dtype=torch.float64), torch.as_tensor(ytr)
    path = LogRegPath(x, y, 10, False)
    for reg in (1e-1, 1e-3, 1e-5, 1e-2):
        path.fit(reg, 1e-9, 2000)
        cold = LogRegPath(x, y, 10, False)
        cold.fit(reg, 1e-9, 2000)
        (w1, b1), (w2, b2) = path.params(), cold.params()
        assert torch.allclose(w1, w2, atol=1e-5 * max(1.0, float(w2.abs().max()))), reg
        assert torch.allclose(b1, b2, atol=1e-5 * max(1.0, float(b2.abs().max()))), reg
        assert path.gradient_norm(reg) <= 1e-9 * path.g0_norm
