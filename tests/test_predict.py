"""Loss-curve and runtime predictors against curves with known parameters."""

import numpy as np
import pytest

from slaq.predict import RuntimeModel, fit_curve, fit_geometric, fit_loss_model
from slaq.quality import LossHistory, NonFiniteLoss, normalized_changes

K = np.arange(1, 61, dtype=float)
CURVES = {
    "sublinear": 1.0 / (0.01 * K**2 + 0.5 * K + 1.0) + 0.2,
    "exponential": 2.0 * 0.85**K + 0.3,
}


@pytest.mark.parametrize("family", sorted(CURVES))
def test_curvefit_recovers_family_and_extrapolates_within_one_percent(family):
    truth = CURVES[family]
    model = fit_curve(truth[:30])
    assert model.family == family
    predicted = model.predict_ahead(np.arange(1, 11, dtype=float))
    np.testing.assert_allclose(predicted, truth[30:40], rtol=0.01)


def test_geometric_is_exact_on_a_geometric_sequence():
    losses = 5.0 * 0.7 ** np.arange(10)
    model = fit_geometric(losses[:4])
    np.testing.assert_allclose(model.predict_ahead(np.arange(1, 7.0)), losses[4:10], rtol=1e-9)


def test_geometric_rising_loss_predicts_no_gain():
    model = fit_geometric(np.array([1.0, 1.2]))
    assert model.predict_ahead(5.0) == pytest.approx(1.2)


def test_geometric_negative_losses_use_drop_ratio():
    # Drops 4, 2, 1 -> ratio 1/2: the series continues 0.5, 0.25, ...
    losses = np.array([-1.0, -5.0, -7.0, -8.0])
    model = fit_geometric(losses)
    assert model.predict_ahead(1.0) == pytest.approx(-8.5)
    assert model.predict_ahead(2.0) == pytest.approx(-8.75)


@pytest.mark.parametrize("losses", [[], [1.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [3.0, 1.0]])
def test_short_or_flat_histories_never_give_nan(losses):
    model = fit_loss_model(np.array(losses), "curvefit")
    out = model.predict_ahead(np.array([0.0, 1.0, 1000.0]))
    assert np.all(np.isfinite(out)) or len(losses) == 0


def test_noisy_history_prediction_is_finite_and_bounded():
    rng = np.random.default_rng(3)
    losses = CURVES["sublinear"] * (1 + 0.2 * rng.standard_normal(K.size))
    model = fit_curve(losses)
    out = model.predict_ahead(np.array([1.0, 10.0, 1e6]))
    assert np.all(np.isfinite(out))
    # Anchored at the last loss and never predicts an increase.
    assert out[0] <= losses[-1] and out[-1] > losses.min() - 10 * np.ptp(losses)


def test_unknown_predictor_is_rejected():
    with pytest.raises(ValueError, match="unknown loss predictor"):
        fit_loss_model(np.ones(3), "oracle")


def test_runtime_model_recovers_work_and_overhead():
    model = RuntimeModel()
    for n in (1, 2, 4, 8, 2, 4):
        model.observe(n, 4.0 / n + 0.2)
    w, beta = model.coefficients
    assert w == pytest.approx(4.0, rel=1e-6)
    assert beta == pytest.approx(0.2, rel=1e-6)
    assert model.predict(16) == pytest.approx(0.45)


def test_runtime_model_prior_and_single_core_count():
    model = RuntimeModel(prior_work_s=2.0, prior_overhead_s=0.1)
    assert model.predict(4) == pytest.approx(0.6)
    assert np.isinf(model.predict(0))
    model.observe(4, 1.1)  # one core count: beta keeps its prior, w absorbs the rest
    assert model.coefficients == pytest.approx((4.0, 0.1))


def test_normalization_divides_by_largest_drop_so_far():
    # drops: -, 4, 2, 6, 3 -> running max 4, 4, 6, 6
    np.testing.assert_allclose(
        normalized_changes(np.array([20.0, 16.0, 14.0, 8.0, 5.0])), [0, 1, 0.5, 1, 0.5]
    )
    history = LossHistory([20.0, 16.0, 14.0])
    assert history.max_drop == 4.0


def test_last_normalized_change_equals_the_whole_array_after_every_append():
    rng = np.random.default_rng(3)
    # Rising, flat and falling steps, so drops are negative, zero and positive.
    losses = np.concatenate([[5.0, 5.0, 6.0], 5.0 - np.cumsum(rng.normal(0.1, 0.2, 60))])
    history = LossHistory()
    for value in losses:
        history.append(value)
        assert history.last_normalized_change() == normalized_changes(history.losses)[-1]


def test_history_rejects_non_finite_loss():
    history = LossHistory([1.0])
    with pytest.raises(NonFiniteLoss):
        history.append(float("nan"))
    assert len(history) == 1
