"""Trainer contract shared by the in-process executor and the live Spark engine.

A trainer only talks to a :class:`TrainContext`: it asks for the elementwise sum of a
module-level block function over the job's data blocks (one Spark job on the live engine) and
reports the training objective once per iteration. Everything else (stopping rules,
cancellation, timing) belongs to the context, so the same trainer code runs in tests, in the
plain-numpy benchmark and on Spark.

Protocol, in order:

1. At most one *setup* ``map_reduce`` over block 0 only (no report); used by trainers whose
   initialization needs a look at the data (k-means++ seeding, step-size estimate).
2. Then strictly alternating: one ``map_reduce`` (an iteration's work), one ``report``.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

BlockFn = Callable[[Any, np.ndarray, np.ndarray], tuple]
"""fn(params, X, y) -> tuple of floats / arrays; must be a picklable module-level function."""


class StopTraining(Exception):
    """Raised by TrainContext.report when the job must stop (converged, max_iter, cancelled)."""


@runtime_checkable
class TrainContext(Protocol):
    """Where a trainer's block functions run and its objectives go."""

    n_blocks: int
    n_rows: int

    def map_reduce(self, fn: BlockFn, params: Any, blocks: Sequence[int] | None = None) -> tuple:
        """Apply fn(params, X, y) to each listed block (all if None) and return the elementwise
        sum of the returned tuples (entries are floats or numpy arrays)."""
        ...

    def report(self, objective: float) -> None:
        """Record one completed iteration with its training objective; may raise StopTraining."""
        ...


class ConvergenceRule:
    """The one stopping rule for every context: max_iter, relative-improvement patience, NaN.

    ``update`` is called once per reported objective and returns True when the job must stop;
    ``reason`` then says why ("max_iter", "converged" or "diverged").
    """

    def __init__(self, max_iter: int, tol: float = 0.0, patience: int = 3) -> None:
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        if tol < 0 or not math.isfinite(tol):
            raise ValueError(f"tol must be a finite number >= 0, got {tol}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.patience = int(patience)
        self.iterations = 0
        self.reason: str | None = None
        self._prev: float | None = None
        self._slow = 0

    def update(self, objective: float) -> bool:
        """Account for one iteration's objective; True when the job must stop."""
        if self.reason is not None:
            return True
        self.iterations += 1
        objective = float(objective)
        if not math.isfinite(objective):
            # A diverged job cannot make progress; continuing would only burn its cores.
            self.reason = "diverged"
            return True
        if self.tol > 0 and self._prev is not None:
            prev = self._prev
            improvement = (prev - objective) / max(abs(prev), 1e-12)
            self._slow = self._slow + 1 if improvement < self.tol else 0
            if self._slow >= self.patience:
                self.reason = "converged"
        self._prev = objective
        if self.reason is None and self.iterations >= self.max_iter:
            self.reason = "max_iter"
        return self.reason is not None


class Trainer(ABC):
    """An iterative training algorithm written against :class:`TrainContext`."""

    algorithm: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(
        self, n_features: int, n_outputs: int, params: Mapping[str, Any], seed: int
    ) -> None:
        if int(n_features) < 1:
            raise ValueError(f"{self.algorithm}: n_features must be >= 1, got {n_features}")
        if int(n_outputs) < 1:
            raise ValueError(f"{self.algorithm}: n_outputs must be >= 1, got {n_outputs}")
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"{self.algorithm}: unknown parameter(s) {unknown}; known: {sorted(self.defaults)}"
            )
        self.n_features = int(n_features)
        self.n_outputs = int(n_outputs)
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.seed = int(seed)
        self.result: Any = None
        self._validate()

    def _validate(self) -> None:  # noqa: B027 - optional hook, not every trainer has params
        """Check hyper-parameters; subclasses raise ValueError naming the algorithm."""

    def _positive(self, name: str, allow_zero: bool = False) -> float:
        value = self.params[name]
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.algorithm}: {name} must be a number, got {value!r}") from None
        ok = value >= 0 if allow_zero else value > 0
        if not (ok and math.isfinite(value)):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{self.algorithm}: {name} must be finite and {bound}, got {value}")
        return value

    def _fraction(self, name: str) -> float:
        value = self._positive(name)
        if value > 1:
            raise ValueError(f"{self.algorithm}: {name} must be in (0, 1], got {value}")
        return value

    @abstractmethod
    def run(self, ctx: TrainContext) -> None:
        """Train until StopTraining or own convergence; each iteration = exactly one
        ctx.map_reduce(...) followed by exactly one ctx.report(objective)."""


# ---------------------------------------------------------------------------------------------
# Helpers shared by the algorithms (block-side helpers must stay module-level and cheap).


def as_f64(X: Any) -> Any:
    """Float64 view/copy of a dense or sparse block, so sums over float32 data stay accurate."""
    if sp.issparse(X):
        return X.astype(np.float64)
    return np.asarray(X, dtype=np.float64)


def squared(X: Any) -> Any:
    """Elementwise square of a dense or sparse matrix."""
    if sp.issparse(X):
        return X.multiply(X).tocsr()
    return X * X


def logsumexp_rows(Z: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp (plain numpy: scipy's version costs ~0.5 ms of dispatch per call)."""
    m = Z.max(axis=1)
    return m + np.log(np.sum(np.exp(Z - m[:, None]), axis=1))


def dense(a: Any) -> np.ndarray:
    """A dense 1-D/2-D ndarray from a matmul result that may be sparse or np.matrix."""
    if sp.issparse(a):
        a = a.toarray()
    return np.asarray(a)


class ParamLayout:
    """Packs named arrays into one flat float64 vector (for scipy.optimize) and back."""

    def __init__(self, shapes: Sequence[tuple[int, ...]]) -> None:
        self.shapes = [tuple(s) for s in shapes]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.size = sum(self.sizes)

    def pack(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Concatenate arrays (in layout order) into one flat vector."""
        return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])

    def unpack(self, theta: np.ndarray) -> list[np.ndarray]:
        """Split a flat vector into arrays of the layout's shapes (views, no copy)."""
        out, start = [], 0
        for shape, size in zip(self.shapes, self.sizes, strict=True):
            out.append(theta[start : start + size].reshape(shape))
            start += size
        return out


def run_lbfgs(
    ctx: TrainContext,
    x0: np.ndarray,
    evaluate: Callable[[np.ndarray], tuple[float, np.ndarray]],
) -> np.ndarray:
    """Minimize with scipy's L-BFGS-B, one ctx.map_reduce + one ctx.report per evaluation.

    ``evaluate(theta)`` must do exactly one map_reduce and return (objective, gradient).
    Returns the best point evaluated: a StopTraining raised in a line search must not leave
    the trainer holding a trial point that is worse than one it already had.
    """
    best_f = math.inf
    best_x = np.array(x0, dtype=np.float64, copy=True)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal best_f, best_x
        f, g = evaluate(theta)
        if f < best_f:
            best_f, best_x = f, np.array(theta, copy=True)
        ctx.report(f)
        return f, g

    # The context owns the iteration budget and the tolerance: scipy's own limits are set out
    # of the way so that runs stop for the same reason on every executor.
    with contextlib.suppress(StopTraining):
        minimize(
            fun,
            best_x.copy(),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 10**9, "maxfun": 10**9, "ftol": 1e-12, "gtol": 1e-9},
        )
    return best_x


def lambda_max_block(params: tuple[int, int], X: np.ndarray, y: np.ndarray) -> tuple:
    """Setup block fn: largest eigenvalue of the intercept-augmented Gram/m of a row sample.

    Runs on the executor so only a scalar travels back; the step-size rules derive their
    Lipschitz constants from it.
    """
    m, seed = params
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(int(m), n), replace=False))
    S = as_f64(X[idx])
    rows = S.shape[0]
    v = rng.standard_normal(S.shape[1] + 1)
    lam = 0.0
    for _ in range(100):
        u = dense(S @ v[:-1]).ravel() + v[-1]
        w = np.empty_like(v)
        w[:-1] = dense(S.T @ u).ravel()
        w[-1] = u.sum()
        w /= rows
        new = float(np.linalg.norm(w))
        if new == 0.0:
            break
        v = w / new
        if abs(new - lam) <= 1e-6 * new:
            lam = new
            break
        lam = new
    return (lam,)


def sample_lipschitz(ctx: TrainContext, seed: int, m: int = 2048) -> float:
    """Setup call: estimate lambda_max(X_aug^T X_aug / n) from a row sample of block 0."""
    (lam,) = ctx.map_reduce(lambda_max_block, (m, seed), [0])
    # A sample can underestimate the full-data eigenvalue; 1.5x keeps steps safely below 2/L.
    return 1.5 * max(float(lam), 1e-12)


def kmeanspp_block(params: tuple[int, int, int], X: np.ndarray, y: np.ndarray) -> tuple:
    """Setup block fn: k-means++ seeding (one trial per center) on a row sample of the block.

    Returns (centers, per-feature variance of the sample); both float64.
    """
    k, m, seed = params
    n = X.shape[0]
    if k > n:
        raise ValueError(f"cannot seed {k} clusters from a block of {n} rows")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(max(int(m), k), n), replace=False))
    S = dense(as_f64(X[idx]))
    sq = np.einsum("ij,ij->i", S, S)
    centers = np.empty((k, S.shape[1]))
    centers[0] = S[rng.integers(S.shape[0])]
    d2 = np.maximum(sq - 2 * S @ centers[0] + centers[0] @ centers[0], 0.0)
    for j in range(1, k):
        total = d2.sum()
        pick = rng.integers(S.shape[0]) if total <= 0 else rng.choice(S.shape[0], p=d2 / total)
        centers[j] = S[pick]
        d2 = np.minimum(d2, np.maximum(sq - 2 * S @ centers[j] + centers[j] @ centers[j], 0.0))
    return centers, S.var(axis=0)
