"""Correlations with bootstrap intervals, checked against scipy.stats."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from genbench.errors import UsageError
from genbench.metrics.correlation import cler_gain_vs_mts, correlate, correlate_with_probe


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coefficients_match_scipy(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=22)  # one point per GenBench dataset
    y = 0.6 * x + rng.normal(size=22)
    y[3] = y[5]  # a tie: Spearman must use average ranks like scipy
    r = correlate(x, y, n_boot=200, seed=seed)
    assert r["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert r["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert r["n"] == 22


def test_bootstrap_interval_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(10)
    x = rng.normal(size=40)
    y = 0.5 * x + rng.normal(size=40)
    r = correlate(x, y, n_boot=4000, ci=0.9, seed=1)
    ref = stats.bootstrap(
        (x, y),
        lambda a, b: stats.pearsonr(a, b).statistic,
        paired=True,
        vectorized=False,
        n_resamples=4000,
        confidence_level=0.9,
        method="percentile",
        rng=np.random.default_rng(2),
    ).confidence_interval
    # Different resamples, same distribution: the percentiles agree up to Monte Carlo error.
    assert r["pearson_ci"][0] == pytest.approx(ref.low, abs=0.04)
    assert r["pearson_ci"][1] == pytest.approx(ref.high, abs=0.04)
    lo, hi = r["spearman_ci"]
    assert lo < r["spearman"] < hi


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=15), rng.normal(size=15)
    assert correlate(x, y, seed=5) == correlate(x, y, seed=5)
    assert correlate(x, y, seed=5)["pearson_ci"] != correlate(x, y, seed=6)["pearson_ci"]


def test_perfect_monotone_relation():
    x = np.arange(10.0)
    r = correlate(x, np.exp(x), n_boot=100)
    assert r["spearman"] == pytest.approx(1.0) and r["spearman_ci"] == pytest.approx((1.0, 1.0))
    assert r["pearson"] < 1.0


@pytest.mark.parametrize("x,y", [([1, 2], [1, 2]), ([1, 2, 3], [1, 2]), ([1, 2, float("nan")], [1, 2, 3])])
def test_bad_input_is_usage_error(x, y):
    with pytest.raises(UsageError):
        correlate(x, y)


def _record(dataset, **scores):
    mts = scores.pop("mts", None)
    rec = {"dataset": dataset, "source": "retrieved" if mts is not None else "generated", "scores": scores}
    if mts is not None:
        rec["mts"] = mts
    return rec


def test_records_against_linear_probe_and_mts():
    rng = np.random.default_rng(12)
    lp = rng.uniform(40, 90, size=8)
    records = [
        _record(f"d{i}", cler=lp[i] + rng.normal(), clip_score=rng.uniform(20, 30), linear_probe=lp[i], zeroshot=lp[i] - 5)
        for i in range(8)
    ]
    records.append(_record("no_probe", cler=50.0))  # no linear_probe: not a point
    out = correlate_with_probe(records, n_boot=100)
    assert set(out) == {"cler", "clip_score"}  # fd_clip absent from every record
    assert out["cler"]["n"] == 8
    assert out["cler"]["pearson"] == pytest.approx(stats.pearsonr([r["scores"]["cler"] for r in records[:8]], lp).statistic)

    mts = rng.uniform(0.2, 0.4, size=6)
    # Fig. 6: the gain is generated data's; the MTS comes from the same dataset's retrieved record
    retr = [_record(f"r{i}", cler=30.0, zeroshot=60.0, mts=m) for i, m in enumerate(mts)]
    gen = [_record(f"r{i}", cler=60 + 50 * m, zeroshot=60.0) for i, m in enumerate(mts)]
    r = cler_gain_vs_mts(records + retr + gen, n_boot=100)
    assert r["n"] == 6 and r["pearson"] == pytest.approx(1.0)
    assert cler_gain_vs_mts(records + retr) is None  # retrieved data's own gain is not what Fig. 6 plots
