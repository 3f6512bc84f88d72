"""Quasi-Newton minimization where every function evaluation is one ``ctx.map_reduce``.

The trainers report one loss per *accepted* step (docs/design.md §2: line-search trial points are
work inside an iteration, not iterations of their own). The loop here therefore owns the line
search and calls ``on_step`` exactly once per accepted point, with that point's objective.

The line search is the weak-Wolfe bracketing search of Lewis & Overton ("Nonsmooth optimization
via quasi-Newton methods", Math. Programming 2013). It needs nothing but function values and
(sub)gradients, works unchanged on smooth objectives, and every accepted step satisfies the
Armijo condition, so the objective at the held model never rises.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Dense BFGS keeps a d x d inverse Hessian; above this many parameters use limited memory.
DENSE_MAX_PARAMS = 4096
LBFGS_MEMORY = 10
ARMIJO_C1 = 1e-4
WOLFE_C2 = 0.9
MAX_LINE_SEARCH_EVALS = 30


@dataclass(frozen=True)
class Point:
    """An evaluated parameter vector: objective and (sub)gradient at ``x``."""

    x: np.ndarray
    f: float
    g: np.ndarray


Evaluate = Callable[[np.ndarray], tuple[float, np.ndarray]]


def evaluate_point(evaluate: Evaluate, x: np.ndarray) -> Point:
    """Evaluate ``x`` (one map_reduce) and wrap the result."""
    f, g = evaluate(x)
    return Point(np.asarray(x, np.float64), float(f), np.asarray(g, np.float64))


def _interpolate(start: Point, d0: float, lo: float, hi: float, f_hi: float) -> float:
    """Next trial in (lo, hi): the minimizer of the quadratic through f(0), f'(0), f(hi) when
    the bracket still starts at 0, else bisection (safe on kinks)."""
    if lo == 0.0 and math.isfinite(f_hi):
        curv = f_hi - start.f - d0 * hi
        if curv > 0:
            a = -d0 * hi * hi / (2.0 * curv)
            return min(max(a, 0.1 * hi), 0.5 * hi)
    return 0.5 * (lo + hi)


def wolfe_search(evaluate: Evaluate, start: Point, p: np.ndarray, step: float) -> Point | None:
    """Weak-Wolfe bracketing line search along ``p``; None if no decreasing step was found."""
    d0 = float(start.g @ p)
    lo, hi, f_hi = 0.0, math.inf, math.inf
    armijo_only: Point | None = None
    for _ in range(MAX_LINE_SEARCH_EVALS):
        trial = evaluate_point(evaluate, start.x + step * p)
        if not math.isfinite(trial.f) or trial.f > start.f + ARMIJO_C1 * step * d0:
            hi, f_hi = step, trial.f
        elif float(trial.g @ p) < WOLFE_C2 * d0:
            lo, armijo_only = step, trial
        else:
            return trial
        step = 2.0 * lo if math.isinf(hi) else _interpolate(start, d0, lo, hi, f_hi)
    # A decreasing step without the curvature condition is still progress (the BFGS update
    # then skips itself if the curvature pair is not positive).
    if armijo_only is not None and armijo_only.f < start.f:
        return armijo_only
    return None


class InverseHessian:
    """BFGS inverse-Hessian approximation: dense for small problems, else limited memory."""

    def __init__(self, n: int, dense: bool | None = None) -> None:
        self.dense = n <= DENSE_MAX_PARAMS if dense is None else dense
        self.H: np.ndarray | None = None
        self.pairs: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=LBFGS_MEMORY)
        self.gamma = 1.0

    @property
    def empty(self) -> bool:
        """True before the first curvature pair (the first step is a scaled gradient step)."""
        return self.H is None and not self.pairs

    def direction(self, g: np.ndarray) -> np.ndarray:
        """Quasi-Newton direction ``-H g``."""
        if self.dense:
            return -(g if self.H is None else self.H @ g)
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            a = rho * float(s @ q)
            alphas.append(a)
            q -= a * y
        q *= self.gamma
        for (s, y, rho), a in zip(self.pairs, reversed(alphas), strict=True):
            q += (a - rho * float(y @ q)) * s
        return -q

    def update(self, s: np.ndarray, y: np.ndarray) -> None:
        """Add the curvature pair (s, y); skipped unless s.y > 0 (keeps H positive definite)."""
        sy = float(s @ y)
        yy = float(y @ y)
        if not (sy > 1e-12 * max(yy, 1e-300) and math.isfinite(sy)):
            return
        rho = 1.0 / sy
        if not self.dense:
            self.pairs.append((s, y, rho))
            self.gamma = sy / yy
            return
        if self.H is None:
            # Scale the initial matrix by s.y / y.y as L-BFGS does (Nocedal & Wright 6.20).
            self.H = np.eye(s.size) * (sy / yy)
        Hy = self.H @ y
        self.H -= rho * (np.outer(s, Hy) + np.outer(Hy, s))
        self.H += (rho * rho * float(y @ Hy) + rho) * np.outer(s, s)

    def reset(self) -> None:
        """Forget the curvature information (after a failed search along its direction)."""
        self.H = None
        self.pairs.clear()


def quasi_newton(
    evaluate: Evaluate,
    start: Point,
    on_step: Callable[[Point], None],
    dense: bool | None = None,
) -> Point:
    """Minimize from an evaluated ``start``; ``on_step`` sees every accepted point, once.

    Stops by itself (returning the last accepted point) when neither the quasi-Newton direction
    nor the steepest-descent direction yields a decrease: the objective is then minimized to
    floating-point precision (or exactly, when the gradient is zero). ``on_step`` may raise to
    stop earlier (the contexts raise StopTraining).
    """
    hess = InverseHessian(start.x.size, dense)
    point = start
    while True:
        gnorm = float(np.linalg.norm(point.g))
        if gnorm == 0.0 or not math.isfinite(gnorm):
            return point
        new = None
        if not hess.empty:
            p = hess.direction(point.g)
            if float(point.g @ p) < 0:
                new = wolfe_search(evaluate, point, p, 1.0)
            if new is None:
                hess.reset()
        if new is None:
            # First step or restart: steepest descent with a unit-length first trial, as
            # scipy's L-BFGS-B does; the line search expands it when that is too short.
            new = wolfe_search(evaluate, point, -point.g, 1.0 / gnorm)
            if new is None:
                return point
        hess.update(new.x - point.x, new.g - point.g)
        point = new
        on_step(point)
