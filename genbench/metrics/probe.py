"""Linear probe, CLIP's protocol: L2-regularised logistic regression on L2-normalised embeddings of the external data.

Objective (multi-class, multinomial)::

    loss(W, b) = mean_i CE(W x_i + b, y_i) + reg / 2 * ||W||_F^2        (the bias is not penalised)

which is scikit-learn's ``LogisticRegression(C=C, solver="lbfgs")`` objective divided by ``C * n``, so
``reg = 1 / (C * n)`` and ``C = 1 / (reg * n)`` for ``n`` training samples: both reach the same optimum.
Multi-label data (VOC-2007) is fit one-vs-rest: the mean over samples of the per-class sigmoid BCE summed over classes, plus
the same penalty; each class's problem is independent and equals scikit-learn's binary problem at the same ``C``.

The regularisation strength is chosen on a validation split carved from the external training data (stratified, seeded),
never from the test set: a coarse log-spaced grid, then a bracket search that halves the log-step around the best value.
The final model is refit on all external data (warm-started) and scored on the test split with the dataset's metric.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from genbench.errors import UsageError
from genbench.metrics.probe_solver import LogRegPath
from genbench.metrics.task import METRICS
from genbench.metrics.task import score as task_score
from genbench.vectors import normalise

log = logging.getLogger(__name__)

# Coarse grid in log10(reg): 1e-6 ... 1e2, one decade apart; then REFINE_STEPS bracket halvings around the best.
COARSE_LOG10 = tuple(range(-6, 3))
REFINE_STEPS = 4
# Logit given to a class the external data has no sample of: it is never predicted, but stays scoreable.
_ABSENT_LOGIT = -1e30


@dataclass
class ProbeResult:
    """``score`` on the test split in percent with ``metric``; ``search`` holds every (reg, validation score) tried."""

    score: float
    metric: str
    reg: float
    val_score: float
    missing_classes: list[int] = field(default_factory=list)
    search: list[tuple[float, float]] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0


def default_device() -> torch.device:
    from genbench.models.device import resolve_device

    return resolve_device(None)


def _as_tensor(a, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), device=device).to(dtype)


def _fit(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    reg: float,
    multilabel: bool,
    max_iter: int,
    init: tuple[torch.Tensor, torch.Tensor] | None,
    tol: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One fit with the path solver (:mod:`genbench.metrics.probe_solver`) on tensors already on the device."""
    path = LogRegPath(x, y, num_classes, multilabel)
    if init is not None:
        path.set_params(*(t.to(device=x.device, dtype=x.dtype) for t in init))
    path.fit(reg, tol, max_iter)
    return path.params()


def grad_scale(x: torch.Tensor, y: torch.Tensor, num_classes: int, multilabel: bool) -> float:
    """Largest |gradient| entry of the data loss at W = 0, b = 0 (closed form: P is uniform, or 1/2 per class).

    scikit-learn's ``tol`` is an absolute bound on that max-norm: ``tol * grad_scale`` gives it the relative meaning the
    torch solver's rule has (an absolute bound would stop a 1,000-class problem, whose mean-loss gradients are ~1000x
    smaller, after a handful of iterations far from the optimum).
    """
    n = x.shape[0]
    if multilabel:
        resid = 0.5 - y
    else:
        resid = torch.full((n, num_classes), 1.0 / num_classes, dtype=x.dtype, device=x.device)
        resid[torch.arange(n, device=x.device), y] -= 1.0
    g_w = resid.t() @ x / n
    g_b = resid.mean(dim=0)
    return float(torch.maximum(g_w.abs().max(), g_b.abs().max()))


def _targets(y: np.ndarray, multilabel: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if multilabel:
        return _as_tensor(y, dtype, device)
    return torch.as_tensor(np.asarray(y, dtype=np.int64), device=device)


def fit_logreg(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    reg: float,
    *,
    multilabel: bool = False,
    device: str | torch.device | None = None,
    max_iter: int = 1000,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    dtype: torch.dtype = torch.float32,
    tol: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the probe at one ``reg`` (see the module docstring for the objective and the mapping to sklearn's ``C``).

    ``x`` is (N, D); ``y`` is (N,) class indices, or (N, C) 0/1 when ``multilabel``. Returns ``W`` (C, D) and ``b`` (C,)
    as float32 numpy arrays; logits are ``x @ W.T + b``. L-BFGS stops when the gradient's L2 norm falls below ``tol``
    times the data loss's gradient norm at zero, after ``max_iter`` iterations, or when progress stalls.
    """
    _check_reg(reg)
    dev = torch.device(device) if device is not None else default_device()
    xt = _as_tensor(x, dtype, dev)
    yt = _targets(y, multilabel, dtype, dev)
    init_t = None if init is None else (_as_tensor(init[0], dtype, dev), _as_tensor(init[1], dtype, dev))
    w, b = _fit(xt, yt, num_classes, reg, multilabel, max_iter, init_t, tol)
    return w.cpu().float().numpy(), b.cpu().float().numpy()


def _check_reg(reg: float) -> None:
    if not (isinstance(reg, (int, float)) and math.isfinite(reg) and reg > 0):
        raise UsageError("probe.reg", reg, "a finite positive number")


def stratified_split(
    y: np.ndarray, val_fraction: float, seed: int, *, multilabel: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of a seeded split of the external data.

    Multi-class: per class, ``round(val_fraction * n_c)`` samples go to validation, always leaving at least one in train
    (a 1-shot class stays entirely in train). Multi-label: stratified by each sample's first positive class (an image with
    no positive label forms its own stratum).
    """
    if not 0.0 < val_fraction < 1.0:
        raise UsageError("probe.val_fraction", val_fraction, "a number strictly between 0 and 1")
    y = np.asarray(y)
    strata = np.where(y.any(axis=1), y.argmax(axis=1), -1) if multilabel else y
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(strata):
        idx = np.flatnonzero(strata == c)
        idx = idx[rng.permutation(len(idx))]
        k = min(int(round(val_fraction * len(idx))), len(idx) - 1)
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _present_classes(y: np.ndarray, num_classes: int, multilabel: bool) -> np.ndarray:
    if multilabel:
        return np.asarray(y).sum(axis=0) > 0
    return np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)[:num_classes] > 0


class _Searcher:
    """Fits on the train part, scores on the validation part and remembers every (reg, score).

    One :class:`LogRegPath` walks all the strengths tried. Each fit starts from the line through the two nearest fitted
    strengths' optima in log(reg) (interpolated between them, or extrapolated by at most their distance): optima move
    smoothly with log(reg), so the refinement's fits often start within the tolerance and cost no iteration at all.
    """

    def __init__(self, xt, yt, xv, yv_np, num_classes, metric, multilabel, max_iter, tol):
        self.path = LogRegPath(xt, yt, num_classes, multilabel)
        self.xv, self.yv = xv, yv_np
        self.metric = metric
        self.max_iter, self.tol = max_iter, tol
        self.fits: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
        self.scores: dict[float, float] = {}
        self.last: float | None = None

    def _start(self, log_reg: float) -> None:
        near = sorted(self.fits, key=lambda k: abs(k - log_reg))
        if len(near) >= 2:
            a, b = near[:2]
            t = max(min((log_reg - a) / (b - a), 1.0), -1.0)
            (wa, ba), (wb, bb) = self.fits[a], self.fits[b]
            self.path.set_params(torch.lerp(wa, wb, t), torch.lerp(ba, bb, t))
        elif near and near[0] != self.last:
            self.path.set_params(*self.fits[near[0]])

    def __call__(self, log_reg: float) -> float:
        log_reg = round(log_reg, 6)
        if log_reg in self.scores:
            return self.scores[log_reg]
        self._start(log_reg)
        iters = self.path.fit(10.0**log_reg, self.tol, self.max_iter)
        w, b = self.path.params()
        self.fits[log_reg] = (w, b.clone())
        self.last = log_reg
        logits = torch.addmm(b, self.xv, w.t()).cpu().double().numpy()
        s = task_score(self.metric, self.yv, logits)
        self.scores[log_reg] = s
        log.debug("probe search: reg=1e%.3f val %s=%.3f (%d iterations)", log_reg, self.metric, s, iters)
        return s


def search_reg(
    searcher: _Searcher, coarse: tuple[float, ...] = COARSE_LOG10, refine_steps: int = REFINE_STEPS
) -> float:
    """Coarse grid in log10(reg), then bracket halving around the best; returns the best log10(reg).

    Ties go to the stronger regularisation (the simpler model), as the grid is walked from large to small reg.
    """
    grid = sorted(coarse, reverse=True)
    best = max(grid, key=lambda g: (searcher(g), g))
    step = (grid[0] - grid[-1]) / max(len(grid) - 1, 1)
    for _ in range(refine_steps):
        step /= 2.0
        candidates = [best, best - step, best + step]
        best = max(candidates, key=lambda g: (searcher(g), g))
    return best


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    metric: str,
    *,
    multilabel: bool = False,
    seed: int = 0,
    val_fraction: float = 0.2,
    reg: float | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    max_iter: int = 1000,
    tol: float = 1e-4,
    coarse: tuple[float, ...] = COARSE_LOG10,
    refine_steps: int = REFINE_STEPS,
    label: str = "linear probe",
) -> ProbeResult:
    """Train on external-data embeddings, score on the real test split with the dataset's ``metric`` (percent).

    Embeddings are L2-normalised here (again, harmlessly, if they already are). With ``reg=None`` the strength is searched
    on a seeded stratified validation split of ``train_x`` only; ``test_x``/``test_y`` are used once, after the final fit.
    A class with no external sample is reported in ``missing_classes`` and logged; it keeps a score column that is never
    predicted (multi-class) or fit from negatives only (multi-label). ``label`` starts its warnings (the collection).
    """
    if metric not in METRICS:
        raise UsageError("metric", metric, METRICS)
    if reg is not None:
        _check_reg(reg)
    train_x = _normalise(np.asarray(train_x, dtype=np.float32), "train_x")
    test_x = _normalise(np.asarray(test_x, dtype=np.float32), "test_x")
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if len(train_x) != len(train_y):
        raise UsageError("train_y", f"{len(train_y)} labels", f"one per training embedding ({len(train_x)})")
    if multilabel and (train_y.ndim != 2 or train_y.shape[1] != num_classes):
        raise UsageError("train_y", f"shape {train_y.shape}", f"(N, {num_classes}) 0/1 for a multi-label probe")
    dev = torch.device(device) if device is not None else default_device()

    present = _present_classes(train_y, num_classes, multilabel)
    missing = [int(c) for c in np.flatnonzero(~present)]
    if missing:
        log.warning("%s: %d class(es) have no external sample: %s", label, len(missing), missing[:20])

    # Multi-class: fit only the present classes (an absent class's bias would run off to -inf), then re-insert columns.
    if multilabel:
        cols = np.arange(num_classes)
        fit_y = train_y
    else:
        cols = np.flatnonzero(present)
        remap = np.full(num_classes, -1, dtype=np.int64)
        remap[cols] = np.arange(len(cols))
        fit_y = remap[train_y.astype(np.int64)]
    k = num_classes if multilabel else len(cols)

    search: list[tuple[float, float]] = []
    val_score = float("nan")
    n_val = 0
    init = None
    if reg is None:
        tr, va = stratified_split(fit_y, val_fraction, seed, multilabel=multilabel)
        n_val = len(va)
        if n_val == 0:
            reg = 1.0 / len(train_x)  # scikit-learn's default C = 1; nothing to validate on (e.g. 1 shot per class)
            log.warning("%s: no validation samples (too few shots); using reg = 1/n = %.3g", label, reg)
        else:
            yv = train_y[va]
            if not multilabel:
                # The validation split is scored in the fitted classes' column space.
                yv = fit_y[va]
            searcher = _Searcher(
                _as_tensor(train_x[tr], dtype, dev),
                _targets(fit_y[tr], multilabel, dtype, dev),
                _as_tensor(train_x[va], dtype, dev),
                yv,
                k,
                metric,
                multilabel,
                max_iter,
                tol,
            )
            best = search_reg(searcher, coarse, refine_steps)
            reg, val_score = 10.0**best, searcher.scores[round(best, 6)]
            search = sorted((10.0**g, s) for g, s in searcher.scores.items())
            init = searcher.fits[round(best, 6)]
            log.info("linear probe: chose reg=%.3g (val %s %.2f) after %d fits", reg, metric, val_score, len(search))

    path = LogRegPath(_as_tensor(train_x, dtype, dev), _targets(fit_y, multilabel, dtype, dev), k, multilabel)
    if init is not None:
        path.adopt_curvature(searcher.path)
        path.set_params(*init)
    path.fit(float(reg), tol, max_iter)
    w, b = path.params()
    logits_fit = torch.addmm(b, _as_tensor(test_x, dtype, dev), w.t()).cpu().double().numpy()
    logits = np.full((len(test_x), num_classes), _ABSENT_LOGIT, dtype=np.float64)
    logits[:, cols] = logits_fit
    test_score = task_score(metric, test_y, logits)
    return ProbeResult(
        score=test_score,
        metric=metric,
        reg=float(reg),
        val_score=float(val_score),
        missing_classes=missing,
        search=search,
        n_train=len(train_x),
        n_val=n_val,
    )


def _normalise(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim != 2:
        raise UsageError(name, f"shape {x.shape}", "(N, D) embeddings")
    return normalise(x)


def score(inputs: Any) -> float:
    """The metric registry's scorer: a probe on the collection's sidecar embeddings, scored on the real test split."""
    ext, spec = inputs.external(), inputs.dataset
    train_y = ext.cls
    if spec.multilabel:
        # Each external sample was made for one class: one-hot targets, scored one-vs-rest on multi-hot test labels.
        train_y = np.eye(spec.num_classes, dtype=np.float32)[ext.cls]
    res = linear_probe(ext.emb, train_y, inputs.test_emb, inputs.labels, spec.num_classes, spec.metric,
                       multilabel=spec.multilabel, seed=inputs.seed, label=f"{inputs.label}: linear probe")
    return res.score
