"""The iteration-time model against scipy's NNLS, its oracle."""

import numpy as np
from scipy.optimize import nnls

from slaq.predict import RuntimeModel, _nnls_two


def test_closed_form_nnls_matches_scipy_on_random_problems():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(2, 50))
        x = 1.0 / rng.integers(1, 9, size=n).astype(float)
        t = rng.uniform(-1, 3) * x + rng.uniform(-1, 1) + rng.normal(0, 0.3, n)
        (w, beta), _ = nnls(np.column_stack([x, np.ones_like(x)]), t)
        got = _nnls_two(x, t)
        assert min(got) >= 0
        best = np.sum((w * x + beta - t) ** 2)
        assert np.sum((got[0] * x + got[1] - t) ** 2) <= best + 1e-9 * (1 + best)


def test_runtime_model_recovers_work_and_fixed_cost_from_wall_times():
    model = RuntimeModel(prior_work_s=1.0, prior_overhead_s=0.05)
    for cores in (1, 2, 4, 8, 2, 1):
        model.observe(cores, 6.0 / cores + 0.3)
    w, beta = model.coefficients
    assert abs(w - 6.0) < 1e-9 and abs(beta - 0.3) < 1e-9
    assert abs(float(model.predict(3)) - (6.0 / 3 + 0.3)) < 1e-9


def test_geometric_rule_survives_a_steep_drop_late_in_a_long_run():
    from slaq.fitbatch import geometric_models
    from slaq.predict import fit_geometric

    history = np.array([1.0] * 998 + [1.0, 0.4])
    model = fit_geometric(history)
    assert np.all(np.isfinite(model.predict_ahead(np.array([0.0, 1.0, 10.0]))))
    assert model == geometric_models([history])[0]


def test_batched_fit_of_only_flat_histories_with_warm_models():
    from slaq.fitbatch import fit_loss_models
    from slaq.predict import LossModel

    flat = [np.full(12, 2.0), np.full(30, 0.5)]
    warm = [LossModel("constant", (), 11.0, 2.0), None]
    models = fit_loss_models(flat, "curvefit", warm=warm)
    assert [m.family for m in models] == ["constant", "constant"]
    assert [m.loss_now for m in models] == [2.0, 0.5]
