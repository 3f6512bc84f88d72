"""Confidence intervals and paired tests over seeds, against hand computation and scipy."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from slaq.stats import describe, mean_ci, paired_test, within_noise


def test_mean_ci_by_hand():
    # x = 1, 2, 3: mean 2, sd 1, sem 1/sqrt(3); t(0.975, df=2) = 4.302653.
    ci = mean_ci([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)
    assert ci["mean"] == pytest.approx(2.0)
    assert ci["ci_low"] == pytest.approx(2.0 - half, rel=1e-6)
    assert ci["ci_high"] == pytest.approx(2.0 + half, rel=1e-6)
    assert (ci["min"], ci["max"], ci["n"]) == (1.0, 3.0, 3)
    assert ci["within_noise"]  # 2 - 2.48 < 0


def test_mean_ci_excludes_zero_and_drops_nan():
    ci = mean_ci([0.10, 0.12, 0.14, float("nan")])
    assert ci["n"] == 3 and ci["n_nan"] == 1
    assert ci["ci_low"] > 0 and not ci["within_noise"]


def test_mean_ci_degenerate_cases():
    one = mean_ci([0.3])
    assert one["mean"] == 0.3 and math.isnan(one["ci_low"]) and one["within_noise"]
    same = mean_ci([0.2, 0.2, 0.2])
    assert same["ci_low"] == same["ci_high"] == pytest.approx(0.2)
    assert not same["within_noise"]


def test_paired_test_matches_scipy():
    a = np.array([0.50, 0.61, 0.55, 0.70, 0.58])
    b = np.array([0.45, 0.60, 0.49, 0.62, 0.57])
    res = paired_test(a, b)
    ref = sps.ttest_rel(a, b)
    d = a - b
    assert res["p_value"] == pytest.approx(ref.pvalue)
    assert res["mean_diff"] == pytest.approx(d.mean())
    lo, hi = sps.t.interval(0.95, 4, loc=d.mean(), scale=sps.sem(d))
    assert (res["ci_low"], res["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert (res["min_diff"], res["max_diff"]) == (pytest.approx(0.01), pytest.approx(0.08))
    assert not res["within_noise"]
    with pytest.raises(ValueError, match="equal lengths"):
        paired_test([1.0], [1.0, 2.0])


def test_within_noise_and_describe():
    assert within_noise(-0.1, 0.2) and not within_noise(0.01, 0.2) and within_noise(np.nan, 1)
    assert describe(mean_ci([0.10, 0.12, 0.14])).startswith("+12.0% [")
    assert describe(mean_ci([-0.1, 0.2])).endswith("(within noise)")
