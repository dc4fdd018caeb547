"""How well a cheap data-quality measure predicts linear-probe accuracy across datasets (paper Fig. 4), and generated
data's CLER gain against each dataset's mean text similarity (Fig. 6): Pearson and Spearman coefficients with seeded
percentile bootstrap confidence intervals (pairs resampled with replacement)."""

from __future__ import annotations

import logging
from typing import Any, Iterable

import numpy as np
from scipy.stats import rankdata

from genbench.errors import UsageError

log = logging.getLogger(__name__)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of (B, n) arrays; NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=1) / den
    r[den <= 1e-300] = np.nan
    return np.clip(r, -1.0, 1.0)


def correlate(x: Iterable[float], y: Iterable[float], *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Pearson and Spearman coefficients of paired samples with bootstrap CIs.

    Returns ``{"pearson", "pearson_ci": (lo, hi), "spearman", "spearman_ci": (lo, hi), "n"}``. Resamples in which either
    variable is constant have no coefficient and are left out of the percentiles.
    """
    x = np.asarray(list(x), dtype=np.float64)
    y = np.asarray(list(y), dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise UsageError("y", f"{y.size} values for {x.size}", "one y per x")
    if len(x) < 3:
        raise UsageError("x", f"{len(x)} pairs", "at least 3 pairs to correlate")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise UsageError("x", "non-finite values", "finite scores (leave out records without the score)")
    if not 0.0 < ci < 1.0:
        raise UsageError("ci", ci, "a level strictly between 0 and 1")
    if n_boot < 1:
        raise UsageError("n_boot", n_boot, "a positive number of resamples")

    pearson = float(_pearson_rows(x[None], y[None])[0])
    spearman = float(_pearson_rows(rankdata(x)[None], rankdata(y)[None])[0])

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    bx, by = x[idx], y[idx]
    boot_p = _pearson_rows(bx, by)
    boot_s = _pearson_rows(rankdata(bx, axis=1), rankdata(by, axis=1))
    q = [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100]

    def interval(v: np.ndarray) -> tuple[float, float]:
        v = v[np.isfinite(v)]
        if len(v) == 0:
            return (float("nan"), float("nan"))
        lo, hi = np.percentile(v, q)
        return (float(lo), float(hi))

    return {
        "pearson": pearson,
        "pearson_ci": interval(boot_p),
        "spearman": spearman,
        "spearman_ci": interval(boot_s),
        "n": int(len(x)),
    }


def _score(record: dict, key: str) -> float | None:
    v = (record.get("scores") or {}).get(key)
    return None if v is None or not np.isfinite(v) else float(v)


def correlate_with_probe(
    records: list[dict],
    measures: tuple[str, ...] = ("cler", "clip_score", "fd_clip"),
    target: str = "linear_probe",
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """Fig. 4: each measure in ``scores`` against the linear-probe score, one point per results.json record that has both.

    A measure with fewer than 3 such records is left out (and logged) rather than reported with a meaningless interval.
    """
    out: dict[str, dict[str, Any]] = {}
    for m in measures:
        pairs = [(_score(r, m), _score(r, target)) for r in records]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if len(pairs) < 3:
            log.info("correlation: %s has %d record(s) with %s; need 3", m, len(pairs), target)
            continue
        out[m] = correlate([a for a, _ in pairs], [b for _, b in pairs], **kwargs)
    return out


def cler_gain_vs_mts(records: list[dict], **kwargs: Any) -> dict[str, Any] | None:
    """Fig. 6: generated data's CLER gain over zero-shot (points) against its dataset's mean text similarity (MTS).

    MTS belongs to a dataset (its class names queried against the caption index), so it is read from that dataset's
    retrieved records; the gain is the generated records'. One point per generated record whose dataset has an MTS
    (pass one series at one shot count for one point per dataset). Retrieved data's own gain is not what the paper
    plots and is not used.
    """
    mts: dict[str, float] = {}
    for r in records:
        v = r.get("mts")
        if r.get("source") == "retrieved" and v is not None and np.isfinite(v):
            mts.setdefault(r["dataset"], float(v))
    xs, ys = [], []
    for r in records:
        if r.get("source") != "generated" or r.get("dataset") not in mts:
            continue
        cler, zs = _score(r, "cler"), _score(r, "zeroshot")
        if cler is None or zs is None:
            continue
        xs.append(mts[r["dataset"]])
        ys.append(cler - zs)
    if len(xs) < 3:
        log.info("correlation: %d generated record(s) whose dataset has an MTS; need 3", len(xs))
        return None
    return correlate(xs, ys, **kwargs)
