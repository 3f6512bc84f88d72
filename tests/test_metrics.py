"""Metrics on small hand-computed traces."""

import numpy as np
import pandas as pd
import pytest

from slaq.metrics import (
    add_quality,
    delays,
    job_loss_integrals,
    prediction_errors,
    quality_over_time,
    share_sooner,
    summarize,
    total_normalized_loss,
)


def trace(rows):
    cols = ["job_id", "arrival_s", "iteration", "t_end_s", "loss"]
    return pd.DataFrame(rows, columns=cols)


# Job x: losses 10 -> 6 -> 2 (L* = 2 from run B), job y: 5 -> 1 (L* = 1).
A = trace(
    [("x", 0, 1, 1, 10), ("x", 0, 2, 2, 6), ("x", 0, 3, 4, 4), ("y", 1, 1, 2, 5), ("y", 1, 2, 4, 1)]
)
B = trace(
    [("x", 0, 1, 1, 10), ("x", 0, 2, 3, 2), ("y", 1, 1, 2, 5), ("y", 1, 2, 3, 3), ("y", 1, 3, 5, 1)]
)


def test_quality_uses_best_loss_over_runs():
    q = add_quality({"A": A, "B": B})
    # x in A: (10-2)/8, (6-2)/8, (4-2)/8
    np.testing.assert_allclose(q["A"].query("job_id == 'x'")["q"], [1.0, 0.5, 0.25])
    np.testing.assert_allclose(q["B"].query("job_id == 'y'")["q"], [1.0, 0.5, 0.0])


def test_quality_over_time_averages_active_jobs():
    q = add_quality({"A": A, "B": B})["A"]
    grid = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 4.5])
    # t=0.5: x only, before its first iteration -> 1. t=1: x q=1, y arrived q=1 -> 1.
    # t=1.5: x 1, y 1 -> 1. t=2: x .5, y 1 -> .75. t=3: same. t=4: x .25, y 0 -> .125.
    # t=4.5: nobody active -> NaN.
    expected = [1.0, 1.0, 1.0, 0.75, 0.75, 0.125, np.nan]
    np.testing.assert_allclose(quality_over_time(q, grid), expected)


def test_delays_to_targets():
    q = add_quality({"A": A, "B": B})
    d = delays(q["A"], targets=(50, 80, 100)).set_index(["job_id", "target"])
    assert d.loc[("x", 50), "delay_s"] == 2.0  # q .5 at t=2
    assert d.loc[("x", 80), "delay_s"] == 4.0 and bool(d.loc[("x", 100), "censored"])
    assert d.loc[("y", 100), "delay_s"] == 3.0  # arrival 1, q 0 at t=4


def test_summary_improvements_against_baseline():
    s = summarize({"A": A, "B": B}, "B", grid_step_s=0.5, targets=(50,))
    qa, qb = s["policies"]["A"]["mean_quality"], s["policies"]["B"]["mean_quality"]
    assert s["policies"]["A"]["quality_improvement"] == pytest.approx(1 - qa / qb)
    # Delays to 50%: A x=2, y=3 (mean 2.5); B x=3, y=2 (mean 2.5): no reduction.
    assert s["policies"]["A"]["delay_reduction"]["50"] == pytest.approx(0.0)
    assert s["policies"]["B"]["quality_improvement"] == 0.0
    assert "peak_quality_improvement" not in s["policies"]["A"]
    with pytest.raises(ValueError, match="baseline 'fair'"):
        summarize({"A": A}, "fair")


def test_total_normalized_loss_integrates_the_step_function():
    q = add_quality({"A": A, "B": B})
    # Common horizon 5. A, x: q 1 on [0,2), .5 on [2,4), .25 on [4,5] -> 2 + 1 + .25 = 3.25;
    # A, y: q 1 on [1,4), 0 after -> 3. B, x: 1 on [0,3) -> 3; B, y: 1 on [1,3), .5 on [3,5) -> 3.
    per_job = job_loss_integrals(q["A"], horizon_s=5.0)
    assert per_job.to_dict() == pytest.approx({"x": 3.25, "y": 3.0})
    assert total_normalized_loss(q["B"], horizon_s=5.0) == pytest.approx(6.0)
    # Without a horizon, the run's own end (4): x loses its last .25 second-share.
    assert total_normalized_loss(q["A"]) == pytest.approx(6.0)


def test_summary_reports_total_loss_and_share_sooner():
    s = summarize({"A": A, "B": B}, "B", grid_step_s=0.5, targets=(50, 80))
    a = s["policies"]["A"]
    assert s["horizon_s"] == 5.0
    assert a["total_normalized_loss"] == pytest.approx(6.25)
    assert a["total_loss_reduction"] == pytest.approx(1 - 6.25 / 6.0)
    # 50%: A x at 2 vs B 3 (sooner), y 3 vs 2 (later). 80%: A x never (later), y 3 vs 4.
    assert a["share_sooner"] == {"50": 0.5, "80": 0.5}
    assert a["share_later"] == {"50": 0.5, "80": 0.5}


def test_share_sooner_ignores_jobs_neither_run_finishes():
    a = pd.DataFrame(
        {"job_id": ["u", "v"], "target": 90, "delay_s": [5.0, 9.0], "censored": [True, False]}
    )
    b = pd.DataFrame(
        {
            "job_id": ["u", "v", "w"],
            "target": 90,
            "delay_s": [4.0, 9.0, 1.0],
            "censored": [True, False, False],
        }
    )
    # u: both censored; v: a tie; w is not in A (unpaired): nobody is sooner or later.
    assert share_sooner(a, b, 90) == {"sooner": 0.0, "later": 0.0, "jobs": 2}


def test_prediction_errors_zero_on_a_geometric_curve():
    losses = {"g": 3.0 * 0.8 ** np.arange(30)}
    err = prediction_errors(losses, predictors=("geometric",), horizons=(1, 10))
    assert err["rel_error"].max() < 1e-9
    assert set(err["horizon"]) == {1, 10}
