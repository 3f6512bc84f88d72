"""Trainer contract shared by the in-process executor and the live Spark engine.

A trainer only talks to a :class:`TrainContext`: it asks for the elementwise sum of a
module-level block function over the job's data blocks (one Spark job on the live engine) and
reports the training objective once per iteration. Everything else (stopping rules,
cancellation, timing) belongs to the context, so the same trainer code runs in tests, in the
plain-numpy benchmark and on Spark.

Protocol, in order:

1. At most one *setup* ``map_reduce`` (no report); used by trainers whose initialization needs
   a look at the data (k-means++ seeding from a sample of every block).
2. Then iterations: one or more ``map_reduce`` calls (an evaluation of the start point, line-search
   trials) followed by exactly one ``report`` of the objective at the model the trainer holds
   after the iteration (docs/design.md §2). Contexts charge an iteration the CPU of every
   ``map_reduce`` since the previous report, setup included for the first iteration.

Block functions return tuples whose entries are floats or numpy arrays (summed elementwise) or
lists (concatenated in block order, used for row samples).
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from slaq.algorithms.optim import evaluate_point, quasi_newton

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
        sum of the returned tuples (floats/arrays add, lists concatenate in block order)."""
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
        """Train until StopTraining or own convergence; each iteration = one or more
        ctx.map_reduce(...) calls followed by exactly one ctx.report(objective)."""


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


def run_quasi_newton(
    ctx: TrainContext,
    x0: np.ndarray,
    evaluate: Callable[[np.ndarray], tuple[float, np.ndarray]],
    hold: Callable[[np.ndarray], None],
    dense: bool | None = None,
) -> None:
    """Minimize by (L-)BFGS; report once per accepted step, after handing it to ``hold``.

    ``evaluate(theta)`` does exactly one map_reduce and returns (objective, gradient). The start
    point's evaluation and every line-search trial are work of the iteration they precede, not
    iterations (docs/design.md §2), so the job always holds the model whose objective it last
    reported, even when StopTraining interrupts a line search.
    """
    start = evaluate_point(evaluate, x0)
    hold(start.x)

    def on_step(point: Any) -> None:
        hold(point.x)
        ctx.report(point.f)

    with contextlib.suppress(StopTraining):
        quasi_newton(evaluate, start, on_step, dense)
