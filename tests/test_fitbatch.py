"""Batched loss-curve fitting against the per-job scipy reference (slaq.predict)."""

import numpy as np
import pytest

from slaq.fitbatch import FittedLossModel, fit_loss_models, geometric_models
from slaq.predict import LossModel, fit_curve, fit_geometric

HORIZONS = np.array([1.0, 5.0, 10.0, 20.0])


def _clean(family: str, rng: np.random.Generator, n: int) -> np.ndarray:
    k = np.arange(1, n + 1, dtype=float)
    if family == "sublinear":
        a, b = rng.uniform(0.0005, 0.02), rng.uniform(0.05, 1.0)
        return 1.0 / (a * k * k + b * k + rng.uniform(0.5, 2.0)) + rng.uniform(0.05, 0.5)
    return rng.uniform(0.5, 2.0) * rng.uniform(0.8, 0.97) ** k + rng.uniform(0.05, 0.5)


def _curves(family: str, count: int, seed: int, noise: float = 0.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        curve = _clean(family, rng, int(rng.integers(30, 90)))
        out.append(curve * (1 + noise * rng.standard_normal(curve.size)))
    return out


@pytest.mark.parametrize("family", ["sublinear", "exponential"])
def test_clean_curves_agree_with_scipy_and_find_the_family(family):
    curves = _curves(family, 12, seed=1)
    histories = [c[:-20] for c in curves]
    batched = fit_loss_models(histories)
    agreed = 0
    for curve, losses, model in zip(curves, histories, batched, strict=True):
        assert model.family == family
        future = curve[losses.size - 1 + HORIZONS.astype(int)]
        np.testing.assert_allclose(model.predict_ahead(HORIZONS), future, rtol=1e-3)
        reference = fit_curve(losses)
        assert model.residual <= reference.residual * 1.001 + 1e-15
        # The reference now and then settles for the other family; where it does not, the
        # two fits must predict the same.
        if reference.family == family:
            agreed += 1
            np.testing.assert_allclose(
                model.predict_ahead(HORIZONS), reference.predict_ahead(HORIZONS), rtol=2e-3
            )
    assert agreed >= len(curves) // 2


@pytest.mark.parametrize("family", ["sublinear", "exponential"])
def test_noisy_curves_fit_at_least_as_well_as_scipy(family):
    # On noise the two may settle in different local optima; the batched fit must not be a
    # worse least-squares fit than the reference's, by the same weighted residual.
    curves = _curves(family, 12, seed=2, noise=0.03)
    batched = fit_loss_models(curves)
    for losses, model in zip(curves, batched, strict=True):
        reference = fit_curve(losses)
        assert model.residual <= reference.residual * 1.001 + 1e-15
        assert np.all(np.isfinite(model.predict_ahead(HORIZONS)))


def test_models_are_anchored_at_the_last_loss():
    curves = _curves("sublinear", 4, seed=3) + _curves("exponential", 4, seed=4)
    for losses, model in zip(curves, fit_loss_models(curves), strict=True):
        assert isinstance(model, LossModel)
        assert model.k_now == losses.size and model.fitted_at == losses.size
        assert model.predict_ahead(0.0) == losses[-1]
        assert np.all(np.diff(model.predict_ahead(np.arange(0.0, 50.0))) <= 0)


EDGE_CASES = {
    "empty": [],
    "one": [1.0],
    "two rising": [1.0, 1.2],
    "flat": [1.0] * 8,
    "short drop": [3.0, 1.0],
    "rising": list(np.linspace(1.0, 2.0, 12)),
    "negative": list(-np.log1p(np.arange(1, 15.0))),
    "tiny": list(1e-300 * (1.0 + 1.0 / np.arange(1, 15.0))),
    "huge": list(1e300 / np.arange(1, 15.0)),
    "step": [2.0] * 10 + [1.0] * 10,
    "long fast decay": list(2.0 ** -np.arange(1, 1500.0) + 1.0),
    "zigzag": [1.0, 2.0] * 10,
}


@pytest.mark.parametrize("predictor", ["curvefit", "geometric"])
def test_never_nan_on_awkward_histories(predictor):
    histories = [np.asarray(h, float) for h in EDGE_CASES.values()]
    models = fit_loss_models(histories, predictor)
    for name, model in zip(EDGE_CASES, models, strict=True):
        out = model.predict_ahead(np.array([0.0, 1.0, 10.0, 1e6]))
        assert np.all(np.isfinite(out)) or name == "empty", name


def test_warm_start_gives_the_cold_answer():
    curves = _curves("sublinear", 8, seed=5) + _curves("exponential", 8, seed=6)
    first = fit_loss_models([c[:-1] for c in curves])
    warm = fit_loss_models(curves, warm=first)
    cold = fit_loss_models(curves)
    for w, c in zip(warm, cold, strict=True):
        assert w.family == c.family
        np.testing.assert_allclose(w.predict_ahead(HORIZONS), c.predict_ahead(HORIZONS), rtol=1e-3)


def test_warm_start_keeps_the_other_family_for_next_time():
    curves = _curves("sublinear", 3, seed=7)
    models = fit_loss_models(curves)
    assert all(isinstance(m, FittedLossModel) and np.isfinite(m.both).all() for m in models)
    assert all(m.both[:4] == m.params for m in models)
    # A warm model from the scipy fitter (no alternate) is accepted too.
    again = fit_loss_models(curves, warm=[fit_curve(c) for c in curves])
    for a, b in zip(again, models, strict=True):
        np.testing.assert_allclose(a.predict_ahead(HORIZONS), b.predict_ahead(HORIZONS), rtol=1e-3)


def test_geometric_matches_the_reference_rule():
    rng = np.random.default_rng(8)
    histories = [rng.normal(0, 1, size=int(rng.integers(0, 6))) for _ in range(200)]
    histories += [np.abs(h) for h in histories] + [np.sort(np.abs(h))[::-1] for h in histories]
    for h, model in zip(histories, geometric_models(histories), strict=True):
        ref = fit_geometric(h)
        assert model.family == ref.family
        np.testing.assert_allclose(model.params, ref.params, rtol=1e-12)
        assert (model.k_now, model.loss_now) == (ref.k_now, ref.loss_now)


def test_short_histories_use_the_geometric_rule():
    short = [np.array([3.0, 2.0, 1.5, 1.2])]
    assert fit_loss_models(short)[0] == fit_geometric(short[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown loss predictor"):
        fit_loss_models([np.ones(3)], "oracle")
    with pytest.raises(ValueError, match="warm has 0 models for 1 histories"):
        fit_loss_models([np.ones(3)], warm=[])
    assert fit_loss_models([]) == []


def test_a_plateau_ending_is_refitted_from_scratch_not_tracked():
    # Flat for 20 iterations, then a drop: the warm curve (a plateau) cannot explain the new
    # loss, so the warm fit must equal a cold one instead of a few steps from the old optimum.
    k = np.arange(1, 31, dtype=float)
    losses = np.where(k <= 20, 1.0 - 1e-4 * k, 0.9 / (0.3 * (k - 20) + 1.0) + 0.05)
    before = fit_loss_models([losses[:20]])
    warm = fit_loss_models([losses[:22]], warm=before)[0]
    cold = fit_loss_models([losses[:22]])[0]
    assert warm.family == cold.family
    np.testing.assert_allclose(warm.params, cold.params, rtol=1e-9)
