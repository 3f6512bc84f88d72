"""Check a job before any Spark work: its hyper-parameters and the data it will train on.

Every error is a ValueError that names the job and the field at fault (docs/design.md §6).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

# Keys of a job's params that the engine consumes (the rest go to the trainer).
ENGINE_KEYS = ("rows",)
CLUSTERING = ("kmeans", "gmm")
CLASSIFIERS = ("logreg", "logreg_sgd", "svm", "mlp")
# Hyper-parameters that must be >= 0 (or > 0) for every algorithm that has them; checked here
# with the job's name even though the trainers check them too.
NON_NEGATIVE = ("reg", "lr", "var_floor", "batch_fraction")
SCAN_ROWS = 65536


def _first_bad(X: Any) -> tuple[int, int] | None:
    """(row, column) of the first NaN/inf in X, scanning in chunks; None if all finite."""
    if sp.issparse(X):
        X = X.tocsr()
        bad = ~np.isfinite(X.data)
        if not bad.any():
            return None
        pos = int(np.argmax(bad))
        row = int(np.searchsorted(X.indptr, pos, side="right") - 1)
        return row, int(X.indices[pos])
    for start in range(0, X.shape[0], SCAN_ROWS):
        chunk = np.asarray(X[start : start + SCAN_ROWS])
        bad = ~np.isfinite(chunk)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            return start + int(r), int(c)
    return None


def validate_data(job_id: str, algorithm: str, X: Any, y: Any, n_outputs: int | None) -> None:
    """NaN/inf in X or y, labels a classifier cannot train on, more clusters than rows."""
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"job {job_id!r}: data X must be a non-empty 2-D array, got {X.shape}")
    where = _first_bad(X)
    if where is not None:
        raise ValueError(
            f"job {job_id!r}: data X has a NaN or infinite value (row {where[0]}, column "
            f"{where[1]}); {algorithm} needs finite features"
        )
    n = X.shape[0]
    if algorithm in CLUSTERING:
        k = n_outputs
        if k is not None and k > n:
            raise ValueError(f"job {job_id!r}: params.k={k} is larger than the {n} data rows")
        return
    if y is None:
        raise ValueError(f"job {job_id!r}: {algorithm} needs targets y, the data has none")
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"job {job_id!r}: data y has shape {y.shape}, expected ({n},)")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        row = int(np.argmax(~np.isfinite(y)))
        raise ValueError(f"job {job_id!r}: data y has a NaN or infinite value (row {row})")
    if algorithm in CLASSIFIERS:
        classes = np.unique(y)
        positive = (y > 0) if algorithm == "svm" or (n_outputs or 0) <= 2 else None
        if classes.size < 2 or (positive is not None and (positive.all() or not positive.any())):
            raise ValueError(
                f"job {job_id!r}: data y has a single class ({classes[:3].tolist()}); "
                f"{algorithm} needs at least two"
            )


def validate_params(
    job_id: str, algorithm: str, params: Mapping[str, Any], n_features: int, n_outputs: int
) -> None:
    """Build the trainer (which checks its parameters) and re-raise naming the job."""
    from slaq.algorithms import make_trainer

    trainer_params = {k: v for k, v in params.items() if k not in ENGINE_KEYS}
    for name in NON_NEGATIVE:
        value = trainer_params.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"job {job_id!r}: params.{name} must be >= 0, got {value}")
    rows = params.get("rows")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
        raise ValueError(f"job {job_id!r}: params.rows must be a positive integer, got {rows!r}")
    try:
        make_trainer(algorithm, n_features, n_outputs, trainer_params, seed=0)
    except ValueError as exc:
        raise ValueError(f"job {job_id!r}: {exc}") from None


def validate_job(
    job_id: str,
    algorithm: str,
    params: Mapping[str, Any],
    X: Any,
    y: Any,
    n_outputs: int,
) -> None:
    """Check one job's hyper-parameters and data; ValueError naming the job and the field.

    ``params`` are the job's params as in the config (``rows`` included), ``X``/``y`` the
    data set it trains on (dense, memory-mapped or scipy.sparse; ``y`` None for clustering),
    ``n_outputs`` as the trainer gets it (classes, ``k``, or 1 for regression).
    """
    validate_params(job_id, algorithm, params, int(X.shape[1]), int(n_outputs))
    rows = params.get("rows")
    k = int(n_outputs) if algorithm in CLUSTERING else None
    if k is not None and rows is not None and k > int(rows):
        raise ValueError(f"job {job_id!r}: params.k={k} is larger than params.rows={rows}")
    validate_data(job_id, algorithm, X, y, k if algorithm in CLUSTERING else n_outputs)
