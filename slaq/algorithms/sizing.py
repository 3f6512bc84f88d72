"""Predict and measure the one-core CPU cost of one training iteration (docs/design.md §7).

Model: ``rows_per_iteration * (a * d * w + b * d + c * e)`` seconds, where d is the number of
features, w the number of d-long dot products per row (classes, clusters, hidden units), e the
number of elementwise outputs per row (exp/tanh/argmin work), and rows_per_iteration the rows
one iteration touches (mini-batches touch a fraction). The constants (a, b, c) were fitted per
algorithm with :func:`calibrate` on the development machine (AMD EPYC, 2 cores, OpenBLAS held
to one thread, float32 blocks of 4096 rows); rerun it on other hardware.

Executors should run with ``OPENBLAS_NUM_THREADS=1``: one task per slot is the parallelism,
and multi-threaded BLAS on a loaded machine was measured 10-40x slower for small products.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# (a, b, c) in seconds: per row and d*w, per row and feature, per row and e. From calibrate().
CPU_CONSTANTS: dict[str, tuple[float, float, float]] = {
    # Median of three calibrate() runs; spot checks at 20k-300k rows agree within +-50%.
    "logreg": (3.75e-10, 2.82e-10, 2.20e-08),
    "logreg_sgd": (4.49e-10, 7.82e-11, 2.87e-08),
    "svm": (0.0, 1.02e-09, 1.18e-08),
    "linreg": (0.0, 6.93e-10, 8.50e-09),
    "mlp": (7.92e-11, 3.84e-09, 2.31e-08),
    "kmeans": (4.91e-11, 3.13e-09, 1.03e-08),
    "gmm": (0.0, 8.51e-09, 4.10e-08),
}

CALIBRATION_BLOCK_ROWS = 4096


def _widths(
    algorithm: str, n_features: int, n_outputs: int, params: Mapping[str, Any]
) -> tuple[float, float]:
    """(w, e): d-long dot products per row, and elementwise outputs per row (exp, tanh...)."""
    if algorithm in ("logreg", "logreg_sgd"):
        k = 1.0 if n_outputs <= 2 else float(n_outputs)
        return k, k
    if algorithm == "mlp":
        hidden = int(params.get("hidden", 16))
        # d*h for the first layer plus h*K for the second, expressed in units of d.
        return hidden + hidden * n_outputs / max(n_features, 1), float(hidden + n_outputs)
    if algorithm in ("kmeans", "gmm"):
        return float(n_outputs), float(n_outputs)
    return 0.0, 1.0


def _rows_per_iteration(algorithm: str, n_rows: int, params: Mapping[str, Any]) -> float:
    if algorithm in ("logreg_sgd", "svm"):
        default = 0.1 if algorithm == "logreg_sgd" else 1.0
        frac = params.get("batch_fraction")
        return n_rows * float(default if frac is None else frac)
    return float(n_rows)


def estimate_iteration_cpu_s(
    algorithm: str,
    n_rows: int,
    n_features: int,
    n_outputs: int,
    params: Mapping[str, Any] | None = None,
) -> float:
    """Roughly predict one-core CPU seconds per iteration (float32 blocks, one BLAS thread)."""
    if algorithm not in CPU_CONSTANTS:
        raise ValueError(f"no cost model for {algorithm!r}; known: {sorted(CPU_CONSTANTS)}")
    params = params or {}
    a, b, c = CPU_CONSTANTS[algorithm]
    w, e = _widths(algorithm, n_features, n_outputs, params)
    per_row = a * n_features * w + b * n_features + c * e
    return _rows_per_iteration(algorithm, n_rows, params) * per_row


def _synthetic_block(
    algorithm: str, rows: int, n_features: int, n_outputs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    X = rng.standard_normal((rows, n_features)).astype(np.float32)
    if algorithm == "linreg":
        y = rng.standard_normal(rows).astype(np.float32)
    elif algorithm in ("kmeans", "gmm"):
        y = np.zeros(rows, np.float32)
    else:
        y = rng.integers(0, max(n_outputs, 2), size=rows).astype(np.int32)
    return X, y


def measure_iteration_cpu_s(
    algorithm: str,
    n_rows: int,
    n_features: int,
    n_outputs: int,
    params: Mapping[str, Any] | None = None,
    repeats: int = 3,
    block_rows: int = CALIBRATION_BLOCK_ROWS,
) -> float:
    """Time one iteration's block work on synthetic data in-process (median of repeats).

    Runs the trainer's own block function over in-memory float32 blocks with BLAS held to one
    thread; the rows touched follow the algorithm's batch fraction.
    """
    from threadpoolctl import threadpool_limits

    from slaq.algorithms import make_trainer
    from slaq.algorithms.clustering import gmm_block, kmeans_block
    from slaq.algorithms.linear import (
        hinge_block,
        logreg_binary_block,
        logreg_multi_block,
        squared_block,
    )
    from slaq.algorithms.mlp import mlp_block

    params = dict(params or {})
    trainer = make_trainer(algorithm, n_features, n_outputs, params, seed=0)
    rng = np.random.default_rng(0)
    d, k = n_features, n_outputs
    if algorithm in ("logreg", "logreg_sgd"):
        fn = logreg_binary_block if k <= 2 else logreg_multi_block
        fparams: Any = (np.zeros(d), 0.0) if k <= 2 else (np.zeros((d, k)), np.zeros(k))
    elif algorithm == "svm":
        fn, fparams = hinge_block, (rng.standard_normal(d) * 0.01, 0.0)
    elif algorithm == "linreg":
        fn, fparams = squared_block, (np.zeros(d), 0.0)
    elif algorithm == "mlp":
        W1, b1, W2, b2 = trainer.layout.unpack(trainer.initial_params())
        fn, fparams = mlp_block, (W1, b1, W2, b2, trainer.relu)
    elif algorithm == "kmeans":
        fn, fparams = kmeans_block, rng.standard_normal((k, d))
    elif algorithm == "gmm":
        fn = gmm_block
        fparams = (rng.standard_normal((k, d)), np.ones((k, d)), np.full(k, 1.0 / k))
    else:
        raise ValueError(f"cannot measure {algorithm!r}")
    rows = max(1, round(_rows_per_iteration(algorithm, n_rows, params)))
    sizes = [block_rows] * (rows // block_rows) + ([rows % block_rows] if rows % block_rows else [])
    blocks = {s: _synthetic_block(algorithm, s, d, k, rng) for s in set(sizes)}
    times = []
    with threadpool_limits(limits=1):
        for _ in range(max(1, repeats)):
            # This thread's CPU: process time also counts a BLAS pool still spinning after an
            # earlier multithreaded call (3.2x the estimate once, at the start of a test run).
            t0 = time.thread_time()
            for s in sizes:
                fn(fparams, *blocks[s])
            times.append(time.thread_time() - t0)
    return float(np.median(times))


CALIBRATION_GRID: tuple[tuple[int, int, int], ...] = (
    # (features, outputs, mlp hidden units)
    (8, 20, 64),
    (20, 2, 8),
    (50, 8, 16),
    (100, 2, 32),
    (100, 10, 8),
    (400, 5, 16),
    (784, 10, 32),
)


def _calibration_point(alg: str, d: int, k: int, hidden: int) -> tuple[int, dict[str, Any]]:
    """Outputs and params an algorithm can actually take at a grid point."""
    if alg == "svm":
        return 2, {}
    if alg == "linreg":
        return 1, {}
    if alg == "mlp":
        return max(k, 2), {"hidden": hidden}
    if alg == "logreg_sgd":
        return max(k, 2), {"batch_fraction": 1.0}
    if alg == "logreg":
        return max(k, 2), {}
    return k, {}


def calibrate(
    algorithms: Sequence[str] | None = None,
    grid: Sequence[tuple[int, int, int]] = CALIBRATION_GRID,
    n_rows: int = 40960,
) -> dict[str, tuple[float, float, float]]:
    """Fit (a, b, c) per algorithm by non-negative least squares on measured relative times."""
    from scipy.optimize import nnls

    out = {}
    for alg in algorithms or sorted(CPU_CONSTANTS):
        rows, targets = [], []
        for d, k, hidden in grid:
            kk, params = _calibration_point(alg, d, k, hidden)
            t = measure_iteration_cpu_s(alg, n_rows, d, kk, params)
            w, e = _widths(alg, d, kk, params)
            feats = np.array([d * w, d, e]) * n_rows
            # Relative weighting: each grid point should be predicted within a factor, not
            # just the largest ones in absolute seconds.
            rows.append(feats / t)
            targets.append(1.0)
        coef, _ = nnls(np.array(rows), np.array(targets))
        out[alg] = (float(coef[0]), float(coef[1]), float(coef[2]))
    return out
