"""Truncated Newton (Newton-CG) with a line search, for smooth convex objectives.

This is what LIBLINEAR runs for L2-regularized logistic regression since version 2.20 (Hsia,
Chiang & Lin, "Preconditioned conjugate gradient methods in truncated Newton frameworks for
large-scale linear classification", ACML 2018): each iteration is one gradient pass plus a few
Hessian-vector products, each a ``map_reduce`` over the blocks, solving the Newton system by
conjugate gradients preconditioned by the Hessian's diagonal; then a backtracking Armijo line
search from the full Newton step. Quasi-Newton methods need thousands of passes at the weak
regularization the workloads use (reg 1e-4 on Fashion-MNIST); Newton-CG needs a few dozen
iterations because it sees the curvature directly.

One iteration = the CG products and the line-search trials (each one map_reduce) followed by
exactly one ``on_step`` of the accepted point (docs/design.md §2). The accepted trial's pass
also returns the gradient and diagonal there, so it doubles as the next iteration's gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ARMIJO_C1 = 1e-4
MAX_BACKTRACKS = 30
# CG stops when the residual is this fraction of the gradient (LIBLINEAR's eps_cg = 0.1)...
CG_RELATIVE_TOL = 0.1
# ... or after this many products: bounds one iteration's CPU; a truncated direction is still
# a descent direction (CG from zero), so the line search makes progress regardless.
CG_MAX_PRODUCTS = 20


@dataclass(frozen=True)
class NewtonPoint:
    """An evaluated point: objective, gradient and Hessian diagonal at ``x``."""

    x: np.ndarray
    f: float
    g: np.ndarray
    diag: np.ndarray


Evaluate = Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]
HessVec = Callable[[np.ndarray, np.ndarray], np.ndarray]


def evaluate_newton_point(evaluate: Evaluate, x: np.ndarray) -> NewtonPoint:
    """Evaluate ``x`` (one map_reduce): objective, gradient and Hessian diagonal."""
    f, g, diag = evaluate(x)
    x = np.asarray(x, np.float64)
    return NewtonPoint(x, float(f), np.asarray(g, np.float64), np.asarray(diag, np.float64))


def newton_direction(
    point: NewtonPoint, hessvec: HessVec, rel_tol: float = CG_RELATIVE_TOL
) -> tuple[np.ndarray, int]:
    """Approximate solution p of H p = -g by diagonally preconditioned CG; (p, products).

    Stops at residual <= rel_tol * ||g||, after CG_MAX_PRODUCTS products, or on non-positive
    curvature (only possible without regularization), returning the last iterate (or -g when
    there is none), which is a descent direction in every case.
    """
    g = point.g
    gnorm = float(np.linalg.norm(g))
    # Jacobi preconditioner; the floor keeps it positive when a block of weights has no data.
    minv = 1.0 / np.maximum(point.diag, 1e-12 * max(float(point.diag.max()), 1e-300))
    p = np.zeros_like(g)
    r = -g
    z = minv * r
    d = z.copy()
    rz = float(r @ z)
    for products in range(1, CG_MAX_PRODUCTS + 1):
        Hd = hessvec(point.x, d)
        curv = float(d @ Hd)
        if not curv > 0 or not math.isfinite(curv):
            return (p if products > 1 else -g), products
        alpha = rz / curv
        p = p + alpha * d
        r = r - alpha * Hd
        if float(np.linalg.norm(r)) <= rel_tol * gnorm:
            return p, products
        z = minv * r
        rz_new = float(r @ z)
        d = z + (rz_new / rz) * d
        rz = rz_new
    return p, CG_MAX_PRODUCTS


def backtrack(evaluate: Evaluate, point: NewtonPoint, p: np.ndarray) -> NewtonPoint | None:
    """Armijo backtracking from the full step (halving); None when no step decreases f."""
    slope = float(point.g @ p)
    if not slope < 0:
        return None
    step = 1.0
    for _ in range(MAX_BACKTRACKS):
        trial = evaluate_newton_point(evaluate, point.x + step * p)
        if math.isfinite(trial.f) and trial.f <= point.f + ARMIJO_C1 * step * slope:
            return trial
        step *= 0.5
    return None


def newton_cg(
    evaluate: Evaluate,
    hessvec: HessVec,
    start: NewtonPoint,
    on_step: Callable[[NewtonPoint], None],
) -> NewtonPoint:
    """Minimize from an evaluated ``start``; ``on_step`` sees every accepted point, once.

    Stops by itself (returning the last accepted point) when the gradient is zero or no step
    along the Newton direction (nor along -g) lowers the objective: minimized to floating-point
    precision. ``on_step`` may raise to stop earlier (the contexts raise StopTraining).
    """
    point = start
    while True:
        gnorm = float(np.linalg.norm(point.g))
        if gnorm == 0.0 or not math.isfinite(gnorm):
            return point
        p, _ = newton_direction(point, hessvec)
        new = backtrack(evaluate, point, p)
        if new is None:
            new = backtrack(evaluate, point, -point.g / gnorm)
            if new is None:
                return point
        point = new
        on_step(point)
