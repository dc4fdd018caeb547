"""The probe's solver: L-BFGS for L2-regularised logistic regression, walking a regularisation path on fixed data.

Objective (the one :mod:`genbench.metrics.probe` documents)::

    f(W, b) = mean_i loss(W x_i + b, y_i) + reg / 2 * ||W||_F^2

with ``loss`` the softmax cross-entropy (multi-class) or the per-class sigmoid BCE summed over classes (multi-label).

Why a search over ``reg`` is cheap with it:

- *Two (N, D) x (D, C) products per iteration, whatever the line search does.* A linear model's logits move on a line
  when its parameters do: ``Z(t) = Z + t * (X dW^T + db)``. One product gives the direction's logits; the line search then
  costs element-wise passes over ``Z(t)`` only (the loss and its slope along the line, exactly); one more product gives
  the gradient at the accepted step. The logits are kept, never recomputed.
- *Work is carried along the path.* The state (parameters, logits, data gradient, curvature pairs) stays with the solver.
  Changing ``reg`` adds ``d_reg * W`` to the gradient and ``d_reg * s`` to each pair's ``y`` (the penalty is quadratic),
  so the pairs stay exact and the first step at a new strength is already a quasi-Newton step.
- *A preconditioner that knows the data.* The initial inverse Hessian is that of ``diag(h) (x) Cov(X) + reg I``, with
  ``h`` each class's mean curvature ``p (1 - p)`` and ``Cov(X)`` the (centred) feature covariance, inverted through one
  eigendecomposition made up front: CLIP features are far from isotropic.
- *A relative stopping rule*: ``||grad||_2 <= tol * ||grad of the data loss at W = 0, b = 0||_2``, independent of ``reg``
  and of the number of classes, so a warm start that is already good enough costs nothing.

Memory: three (N, C) buffers of the working dtype (logits, direction logits, probabilities) and a centred copy of ``X``.
Device-generic: the same code runs on CPU and CUDA tensors.
"""

from __future__ import annotations

import math

import torch


class LogRegPath:
    """L-BFGS on fixed data ``x`` (N, D) and targets ``y`` ((N,) int64 class indices, or (N, C) 0/1 of ``x``'s dtype
    when ``multilabel``). :meth:`fit` solves at one ``reg`` from the current state; :meth:`set_params` moves the state."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, multilabel: bool, history: int = 10):
        # Centring decouples the bias from W in the curvature (the bias absorbs the mean; W is unchanged).
        self.mu = x.mean(dim=0)
        self.x = x - self.mu
        self.y, self.multilabel = y, multilabel
        self.n, self.d = x.shape
        self.c = num_classes
        self.cd = self.c * self.d
        lam, vec = torch.linalg.eigh((self.x.t() @ self.x).double() / self.n)
        self.lam, self.vec = lam.clamp_min(0).to(x.dtype), vec.to(x.dtype)
        self.history = history
        self.iterations = 0
        self.products = 0  # (N, D) x (D, C)-sized products so far: the solver's cost
        dt, dev = x.dtype, x.device
        self.theta = torch.zeros(self.cd + self.c, dtype=dt, device=dev)  # W flattened, then the (centred) bias
        self.z = torch.zeros(self.n, self.c, dtype=dt, device=dev)
        self.zd = torch.empty_like(self.z)
        self.p = torch.empty_like(self.z)
        self.rows = None if multilabel else torch.arange(self.n, device=dev)
        self.pairs: list[tuple[torch.Tensor, torch.Tensor, float]] = []
        self.pairs_reg = 0.0
        self.h = torch.empty(self.c, dtype=dt, device=dev)
        self.f_data, self.g_data = self._value_and_gradient()
        self.g0_norm = float(self.g_data.norm())

    # -- parameters ---------------------------------------------------------------------------------------------------
    def _w(self, v: torch.Tensor) -> torch.Tensor:
        return v[: self.cd].view(self.c, self.d)

    def set_params(self, w: torch.Tensor, b: torch.Tensor) -> None:
        """Move to (W (C, D), b (C,)): one product for the logits and one for the gradient; curvature pairs are kept."""
        self.theta[: self.cd].copy_(w.reshape(-1))
        self.theta[self.cd :].copy_(b + w @ self.mu)
        torch.addmm(self.theta[self.cd :], self.x, self._w(self.theta).t(), out=self.z)
        self.products += 1
        self.f_data, self.g_data = self._value_and_gradient()

    def adopt_curvature(self, other: LogRegPath) -> None:
        """Start from ``other``'s curvature pairs: a fit on a superset of ``other``'s data (the probe's refit on all the
        external data after the search on part of it) has nearly the same mean-loss Hessian, so its first steps are
        already quasi-Newton steps instead of preconditioned gradient steps."""
        self.pairs = [(s.clone(), y.clone(), rho) for s, y, rho in other.pairs]
        self.pairs_reg = other.pairs_reg

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, b) for uncentred inputs: logits are ``x @ W.T + b``. A softmax is blind to a constant added to every
        class's bias, so a multi-class bias is returned with mean zero (as a fit by gradient steps from zero keeps it)."""
        w = self._w(self.theta).clone()
        b = self.theta[self.cd :] - w @ self.mu
        return w, (b if self.multilabel else b - b.mean())

    # -- loss along the logits line -----------------------------------------------------------------------------------
    def _data_value(self, t: float, zy: float, zdy: float) -> float:
        """Data loss at ``Z + t * Zd``; leaves the probabilities (softmax or sigmoid) there in ``self.p``."""
        p = self.p
        if t == 0.0:
            p.copy_(self.z)
        else:
            torch.add(self.z, self.zd, alpha=t, out=p)
        if self.multilabel:
            value = float(torch.nn.functional.softplus(p).sum()) - (zy + t * zdy)
            p.sigmoid_()
            return value / self.n
        m = p.amax(dim=1, keepdim=True)
        p.sub_(m).exp_()
        s = p.sum(dim=1, keepdim=True)
        p.div_(s)
        return (float(s.log_().add_(m).sum()) - (zy + t * zdy)) / self.n

    def _target_dot(self, z: torch.Tensor) -> float:
        """sum_i <target_i, z_i>: the part of the loss linear in the logits."""
        if self.multilabel:
            return float(torch.dot(self.y.reshape(-1), z.reshape(-1)))
        return float(z[self.rows, self.y].sum())

    def _slope(self, zdy: float) -> float:
        """d/dt of the data loss along the line, from the probabilities in ``self.p``."""
        return (float(torch.dot(self.p.reshape(-1), self.zd.reshape(-1))) - zdy) / self.n

    def _value_and_gradient(self) -> tuple[float, torch.Tensor]:
        f = self._data_value(0.0, self._target_dot(self.z), 0.0)
        return f, self._gradient_from_p()

    def _gradient_from_p(self) -> torch.Tensor:
        """Data gradient from the probabilities in ``self.p`` (consumed): (P - Y)^T X / n and the column means."""
        p = self.p
        torch.mean(p - p.square(), dim=0, out=self.h)
        if self.multilabel:
            p.sub_(self.y)
        else:
            p[self.rows, self.y] -= 1.0
        g = torch.empty_like(self.theta)
        torch.mm(p.t(), self.x, out=self._w(g))
        torch.sum(p, dim=0, out=g[self.cd :])
        self.products += 1
        return g.div_(self.n)

    def _penalised_gradient(self, reg: float) -> torch.Tensor:
        g = self.g_data.clone()
        self._w(g).add_(self._w(self.theta), alpha=reg)
        return g

    # -- L-BFGS -------------------------------------------------------------------------------------------------------
    def _set_pairs_reg(self, reg: float) -> None:
        """Re-express the curvature pairs at ``reg``: each ``y`` gains ``(reg - old) * s`` on the W block."""
        delta = reg - self.pairs_reg
        if delta != 0.0:
            kept = []
            for s, y, _ in self.pairs:
                self._w(y).add_(self._w(s), alpha=delta)
                sy = float(torch.dot(s, y))
                if sy > 0:
                    kept.append((s, y, 1.0 / sy))
            self.pairs = kept
        self.pairs_reg = reg

    def _h0(self, q: torch.Tensor) -> torch.Tensor:
        """Apply the initial inverse Hessian ``(diag(h) (x) Cov + reg I)^-1`` in place."""
        h = self.h.clamp_min(1e-6 * float(self.h.max()) + 1e-30)
        qw = self._w(q)
        u = qw @ self.vec
        u.div_(h[:, None] * self.lam[None, :] + self.pairs_reg)
        torch.mm(u, self.vec.t(), out=qw)
        # The bias is unpenalised, but dividing by h alone would blow float32 noise in its gradient up by ~C at a strong
        # reg, where the model's logits are themselves tiny; adding reg only slows a bias that has nowhere to go there.
        q[self.cd :].div_(h + self.pairs_reg)
        return q

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        """The L-BFGS two-loop recursion: an approximation of ``-H^-1 g``."""
        q = g.neg()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            a = rho * float(torch.dot(s, q))
            q.add_(y, alpha=-a)
            alphas.append(a)
        q = self._h0(q)
        for (s, y, rho), a in zip(self.pairs, reversed(alphas)):
            q.add_(s, alpha=a - rho * float(torch.dot(y, q)))
        return q

    def gradient_norm(self, reg: float) -> float:
        return float(self._penalised_gradient(reg).norm())

    def fit(self, reg: float, tol: float, max_iter: int) -> int:
        """Minimise at ``reg`` from the current state; returns the iterations taken (0 if the state already passes)."""
        self._set_pairs_reg(reg)
        g = self._penalised_gradient(reg)
        target = tol * self.g0_norm
        it = 0
        while it < max_iter and float(g.norm()) > target:
            d = self._direction(g)
            slope0 = float(torch.dot(g, d))
            if not slope0 < 0:  # not a descent direction (pairs spoilt by rounding): restart from the preconditioner
                self.pairs.clear()
                d = self._direction(g)
                slope0 = float(torch.dot(g, d))
            t = self._line_search(reg, d, slope0)
            if t is None:
                break  # no further decrease is measurable in this precision
            s = d.mul_(t)
            self.theta.add_(s)
            self.z.add_(self.zd, alpha=t)
            self.g_data = self._gradient_from_p()
            g_new = self._penalised_gradient(reg)
            y = g_new - g
            sy = float(torch.dot(s, y))
            if sy > 1e-12 * float(s.norm()) * float(y.norm()):
                self.pairs.append((s, y, 1.0 / sy))
                del self.pairs[: -self.history]
            g = g_new
            it += 1
        self.iterations += it
        return it

    def _line_search(self, reg: float, d: torch.Tensor, slope0: float, c1: float = 1e-4, c2: float = 0.9):
        """A step ``t`` along ``d`` meeting the strong Wolfe conditions, found on the logits line (no product beyond the
        direction's own); ``self.p`` then holds the probabilities at ``t``. None when nothing decreases measurably."""
        dw, db, w = self._w(d), d[self.cd :], self._w(self.theta)
        torch.addmm(db, self.x, dw.t(), out=self.zd)
        self.products += 1
        zy, zdy = self._target_dot(self.z), self._target_dot(self.zd)
        wf, df = w.reshape(-1), dw.reshape(-1)
        ww, wd, dd = float(torch.dot(wf, wf)), float(torch.dot(wf, df)), float(torch.dot(df, df))
        f0 = self.f_data + 0.5 * reg * ww
        slack = 1e-6 * (abs(f0) + 1.0)  # sums over N x C terms in float32 are not exact
        lo, g_lo, prev, g_prev, hi, g_hi = 0.0, slope0, 0.0, slope0, math.inf, math.nan
        t = 1.0
        for _ in range(30):
            f_data = self._data_value(t, zy, zdy)
            f = f_data + 0.5 * reg * (ww + 2 * t * wd + t * t * dd)
            slope = self._slope(zdy) + reg * (wd + t * dd)
            if f > f0 + c1 * t * slope0 + slack or slope > c2 * abs(slope0):
                hi, g_hi = t, slope
            elif slope < -c2 * abs(slope0):
                prev, g_prev, lo, g_lo = lo, g_lo, t, slope
            else:
                self.f_data = f_data
                return t
            if math.isinf(hi):  # still descending: extrapolate along the slope's secant, 2x to 16x further
                t = _secant(prev, g_prev, lo, g_lo, 2.0 * t, 16.0 * t)
            else:
                if hi - lo <= 1e-7 * hi:
                    break
                width = hi - lo
                t = _secant(lo, g_lo, hi, g_hi, lo + 0.1 * width, hi - 0.1 * width)
        return None


def _secant(a: float, ga: float, b: float, gb: float, low: float, high: float) -> float:
    """Where the slope's secant through (a, ga), (b, gb) crosses zero, clipped to [low, high] (the middle if flat)."""
    if gb != ga and math.isfinite(ga) and math.isfinite(gb):
        t = a - ga * (b - a) / (gb - ga)
        if math.isfinite(t):
            return min(max(t, low), high)
    return 0.5 * (low + high)
