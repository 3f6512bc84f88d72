"""Batched loss-curve fitting: every job's models at once in numpy (docs/design.md §1).

The same fit as :func:`slaq.predict.fit_curve` (the per-job scipy reference): weighted least
squares over the last ``FIT_WINDOW`` losses with weights ``max(RECENCY**i, MIN_WEIGHT)``, both
families, the smaller weighted residual wins, the geometric rule when the history is short or
no fit is usable, and never a NaN prediction. Instead of one scipy call per job, all jobs share
padded ``(jobs, window)`` arrays and run Levenberg-Marquardt together.

Layout: column ``m`` holds the loss ``m`` iterations before the latest (``m = 0`` is the
latest), so the weights and the abscissa ``v = m / h`` are the same row for every job; padded
columns have weight 0. Losses are rescaled per job to ``z = (y - min) / span`` and both
families keep their form under that rescaling, which makes one set of tolerances fit all jobs.
:mod:`slaq.fitbatch_families` holds the two families in these coordinates.

Cold rows start from a grid search like the reference's; warm rows (a previous model given)
start from it and get a few iterations, so a decision loop that refits every epoch tracks each
optimum as losses arrive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slaq.fitbatch_families import FAMILY_OPS, Window, solve_spd
from slaq.predict import FIT_WINDOW, MIN_POINTS_CURVEFIT, MIN_WEIGHT, PREDICTORS, RECENCY, LossModel

# Levenberg-Marquardt stops a job once an accepted step improves its error by less than this
# fraction; the reference's MINPACK defaults (ftol 1.5e-8) stop at a similar point.
REL_TOL = 1e-7
# A row fitted this closely (z is in [0, 1], so RMS ~1e-8 of the span) has nothing left that
# would change a prediction; ill-conditioned exact fits otherwise crawl for many iterations.
SSE_FLOOR = 1e-16
COLD_ITERATIONS = 40
KEEP_RATIO = 10.0
WARM_ITERATIONS = 10
# Families whose warm fits are checked against their grid's best start: the exponential's is
# closed form (~2% of a simulation); the sublinear's golden search cost 28% and did not help.
RIVAL_GRID = ("exponential",)
# Newest-loss residual, in RMS residuals of the warm fit, above which a row is refitted cold
# (far beyond noise: a cold fit has a fixed cost of a few ms however few rows it has).
SURPRISE = 6.0
DAMPING = 1e-3  # initial Marquardt damping (relative to the diagonal)
_PROBE = np.array([1.0, 10.0, 100.0])


@dataclass(frozen=True)
class FittedLossModel(LossModel):
    """A :class:`LossModel` that also keeps both families' fits, to warm-start them next time.

    ``both`` is ``(a, b, c, d, A, r, c)``: the sublinear then the exponential public
    parameters, NaN for a family without a usable fit. Policies never need it.
    """

    both: tuple[float, ...] = (math.nan,) * 7


def fit_loss_models(
    histories: Sequence[np.ndarray],
    predictor: str = "curvefit",
    warm: Sequence[LossModel | None] | None = None,
) -> list[LossModel]:
    """Fit one loss model per history at once (batched counterpart of ``fit_loss_model``)."""
    if predictor not in PREDICTORS:
        raise ValueError(f"unknown loss predictor {predictor!r}; known: {', '.join(PREDICTORS)}")
    if warm is not None and len(warm) != len(histories):
        raise ValueError(f"warm has {len(warm)} models for {len(histories)} histories")
    arrays = [
        h if type(h) is np.ndarray and h.dtype == np.float64 and h.ndim == 1 else _as_1d(h)
        for h in histories
    ]
    models: list[LossModel | None] = [None] * len(arrays)
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    rows = np.flatnonzero(lengths >= MIN_POINTS_CURVEFIT)
    if predictor == "curvefit" and rows.size:
        win = _window(arrays, lengths, rows)
    if predictor == "curvefit" and rows.size and win.rows.size:  # flat histories drop out
        starts = public_params(warm, win.rows)
        new_losses = np.maximum(win.k_last - np.nan_to_num(starts["fitted_at"]), 1.0)
        fits = {
            family: _fit_family(ops, win, starts[family], new_losses, family in RIVAL_GRID)
            for family, ops in FAMILY_OPS.items()
        }
        _choose(models, win, fits)
    # The geometric rule: the predictor itself, or the fallback where no curve fit is usable.
    rest = [i for i, m in enumerate(models) if m is None]
    for i, model in zip(rest, geometric_models([arrays[i] for i in rest]), strict=True):
        models[i] = model
    return models  # type: ignore[return-value]


def _as_1d(values) -> np.ndarray:
    return np.asarray(values, dtype=float).ravel()


def public_params(
    warm: Sequence[LossModel | None] | None, rows: np.ndarray
) -> dict[str, np.ndarray]:
    """Each family's public parameters in the warm models of ``rows`` (NaN where none), and
    the iteration each warm model was fitted at (``fitted_at``).

    A :class:`FittedLossModel` carries both families' fits, so both start warm; any other
    model warms only its own family.
    """
    nan7 = (math.nan,) * 7
    table = np.full((rows.size, 8), np.nan)
    if warm is not None:
        models = [warm[i] for i in rows.tolist()]
        # One comprehension and one array: per-model Python work dominates at 4,000 jobs.
        table[:, :7] = [getattr(m, "both", nan7) for m in models]
        table[:, 7] = [m.fitted_at if m is not None else 0.0 for m in models]
        others = [j for j, m in enumerate(models) if m is not None and type(m) is LossModel]
        for j in others:
            m = models[j]
            if m.family == "sublinear" and len(m.params) == 4:
                table[j, :4] = m.params
            elif m.family == "exponential" and len(m.params) == 3:
                table[j, 4:7] = m.params
    return {"sublinear": table[:, :4], "exponential": table[:, 4:7], "fitted_at": table[:, 7]}


def _window(arrays: list[np.ndarray], lengths: np.ndarray, rows: np.ndarray) -> Window:
    """Right-aligned, reversed, rescaled windows of the histories in ``rows`` with span > 0."""
    width = int(min(FIT_WINDOW, lengths[rows].max()))
    used = np.minimum(lengths[rows], width)
    flat = np.concatenate([arrays[i][-width:][::-1] for i in rows])
    row_of = np.repeat(np.arange(rows.size), used)
    col_of = np.arange(flat.size) - np.repeat(np.cumsum(used) - used, used)
    y = np.zeros((rows.size, width))
    y[row_of, col_of] = flat
    mask = np.arange(width)[None, :] < used[:, None]
    ymin = np.where(mask, y, np.inf).min(axis=1)
    span = np.where(mask, y, -np.inf).max(axis=1) - ymin
    # A flat window has nothing to fit; the reference returns no model there (geometric).
    keep = span > 0
    y, mask, ymin, span = y[keep], mask[keep], ymin[keep], span[keep]
    z = np.where(mask, (y - ymin[:, None]) / span[:, None], 0.0)
    cols = np.arange(width, dtype=float)
    w = np.maximum(RECENCY**cols, MIN_WEIGHT)[None, :] * mask
    return Window(
        rows=rows[keep],
        z=z,
        w=w,
        mask=mask,
        ymin=ymin,
        span=span,
        k_last=lengths[rows[keep]].astype(float),
        last=y[:, 0],
        v=cols / max(width - 1, 1),
        h=float(max(width - 1, 1)),
    )


def _fit_family(
    ops, win: Window, warm: np.ndarray, new_losses: np.ndarray, rival: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Fitted parameters and weighted SSE (in z units) of one family for every row.

    Rows with a warm model of this family start from it (with ``rival``, checked against the
    grid's best start); the others from the family's grid search. (Keeping the start where the
    constraints stop the polish, as the reference does, was tried: it made predictions worse,
    warm-started ones most.)
    """
    n = win.z.shape[0]
    guess, has_warm = ops.from_public(warm, win)
    params, sse = np.zeros((n, ops.size)), np.full(n, np.inf)
    warm_rows = np.flatnonzero(has_warm)
    if warm_rows.size:
        sub = win.take(warm_rows)
        p0 = ops.project(guess[warm_rows], sub)
        s0 = ops.sse(p0, sub)
        surprise = _surprised(ops.residuals(p0, sub), sub, new_losses[warm_rows])
        has_warm[warm_rows[surprise | ~np.isfinite(s0)]] = False
        keep = ~surprise & np.isfinite(s0)
        warm_rows, sub = warm_rows[keep], sub.take(np.flatnonzero(keep))
        params[warm_rows], sse[warm_rows] = levenberg_marquardt(
            ops, p0[keep], s0[keep], sub, WARM_ITERATIONS
        )
        if rival:
            _take_better_grid_fit(ops, sub, warm_rows, params, sse)
    cold_rows = np.flatnonzero(~has_warm)
    if cold_rows.size:
        params[cold_rows], sse[cold_rows] = _cold(ops, win.take(cold_rows))
    return params, sse


def _take_better_grid_fit(
    ops, win: Window, rows: np.ndarray, params: np.ndarray, sse: np.ndarray
) -> None:
    """Replace warm fits of ``rows`` by the polished best grid start where that fits better.

    Only rows whose best grid start, unpolished, already beats the polished warm fit are
    polished. Measured on the prediction benchmark (136 recorded and held-out curves, refitted
    at every loss): median error over scipy's 1.10-1.23x without this, 1.03-1.10x with it.
    """
    starts, grid_sse = _scored_grid(ops, win)
    m = grid_sse.shape[1]
    best = grid_sse.argmin(axis=0)
    best_sse = grid_sse[best, np.arange(m)]
    rival = np.flatnonzero(best_sse < sse[rows])
    if not rival.size:
        return
    fitted, fitted_sse = levenberg_marquardt(
        ops, starts[best[rival], rival], best_sse[rival], win.take(rival), COLD_ITERATIONS
    )
    better = fitted_sse < sse[rows[rival]]
    params[rows[rival[better]]], sse[rows[rival[better]]] = fitted[better], fitted_sse[better]


def _surprised(resid: np.ndarray, win: Window, new: np.ndarray) -> np.ndarray:
    """Rows whose losses since the warm fit lie far off the warm curve.

    A plateau ending or a change of regime leaves the warm optimum's valley behind: such rows
    are searched afresh rather than tracked. Far means more than ``SURPRISE`` times the RMS
    residual of the points the warm model had already seen.
    """
    fresh = np.arange(win.z.shape[1])[None, :] < new[:, None]
    old_w = np.where(fresh, 0.0, win.w)
    with np.errstate(all="ignore"):
        rms = np.sqrt((old_w * resid * resid).sum(axis=1) / old_w.sum(axis=1))
        jump = np.where(fresh & win.mask, np.abs(resid), 0.0).max(axis=1)
        return ~(jump <= SURPRISE * rms + 1e-8)


def _scored_grid(ops, win: Window) -> tuple[np.ndarray, np.ndarray]:
    """The family's grid starts ``(candidates, J, p)`` and their SSE ``(candidates, J)``."""
    starts = ops.grid_start(win)
    cands, m = starts.shape[:2]
    job = np.tile(np.arange(m), cands)
    flat_sse = ops.sse(starts.reshape(-1, starts.shape[2]), win.take(job))
    return starts, flat_sse.reshape(cands, m)


def _cold(ops, win: Window) -> tuple[np.ndarray, np.ndarray]:
    """Best polished fit and its SSE over the starts of the family's grid search."""
    starts, grid_sse = _scored_grid(ops, win)
    cands, m = grid_sse.shape
    job = np.tile(np.arange(m), cands)
    flat = starts.reshape(-1, starts.shape[2])
    flat_sse = grid_sse.ravel()
    first = grid_sse.min(axis=0)
    # Polish only starts about as good as the job's best one: the others are nearly always
    # the same valley seen from further away and only cost iterations.
    keep = np.flatnonzero(flat_sse <= KEEP_RATIO * first[job] + SSE_FLOOR)
    fitted, fitted_sse = levenberg_marquardt(
        ops, flat[keep], flat_sse[keep], win.take(job[keep]), COLD_ITERATIONS
    )
    best = np.full(m, np.inf)
    np.minimum.at(best, job[keep], fitted_sse)
    winner = np.flatnonzero(fitted_sse == best[job[keep]])  # ties: any of them is fine
    params = np.zeros((m, starts.shape[2]))
    params[job[keep][winner]] = fitted[winner]
    return params, best


def levenberg_marquardt(
    ops, params: np.ndarray, sse: np.ndarray, win: Window, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """Projected Levenberg-Marquardt on all rows at once; converged rows drop out."""
    params, sse = params.copy(), sse.copy()
    damping = np.full(sse.size, DAMPING)
    rows = np.flatnonzero(np.isfinite(sse) & (sse > SSE_FLOOR))  # rows of the working set
    sub = win.take(rows)
    alive = np.ones(rows.size, dtype=bool)
    for _ in range(iterations):
        if not alive.any():
            break
        if alive.sum() < 0.75 * alive.size:  # copy the window only when it pays off
            rows, sub, alive = rows[alive], sub.take(np.flatnonzero(alive)), alive[alive]
        p, s, lam = params[rows], sse[rows], damping[rows]
        hess, grad = ops.normal(p, sub)
        _hold_bounds(ops, p, hess, grad)
        step = solve_spd(hess, -grad, lam)
        trial = ops.project(p + step, sub)
        trial_sse = ops.sse(trial, sub)
        accept = alive & (trial_sse < s)
        params[rows[accept]], sse[rows[accept]] = trial[accept], trial_sse[accept]
        damping[rows] = np.where(accept, lam * 0.3, lam * 4.0)
        # Stationary: even the linear model promises almost nothing (both tests as MINPACK's
        # ftol, which also stops on the actual reduction).
        promised = -(grad * step).sum(axis=1)
        small = (promised <= REL_TOL * s) | (accept & (s - trial_sse <= REL_TOL * s))
        done = small | (lam > 1e10) | ~np.isfinite(step).all(axis=1) | (sse[rows] <= SSE_FLOOR)
        alive &= ~done
    return params, sse


def _hold_bounds(ops, p: np.ndarray, hess: np.ndarray, grad: np.ndarray) -> None:
    """Freeze parameters at a lower bound that the gradient pushes further down.

    Without this, every step would leave the bound and be clipped back, which distorts the
    other coordinates and stalls LM (a true ``1/(b k + c)`` curve sits at ``a = 0``).
    """
    for i, lower in ops.bounds:
        held = (p[:, i] <= lower) & (grad[:, i] > 0)
        if held.any():
            hess[held, i, :] = 0.0
            hess[held, :, i] = 0.0
            hess[held, i, i] = 1.0
            grad[held, i] = 0.0


def _choose(models: list[LossModel | None], win: Window, fits: dict) -> None:
    """Replace ``models[row]`` by the family with the smaller weighted residual, if usable."""
    total_w = win.w.sum(axis=1)
    results = {}
    for family, (params, sse) in fits.items():
        public, ok = FAMILY_OPS[family].to_public(params, win)
        with np.errstate(over="ignore"):  # spans near 1e300: no usable residual
            resid = sse * win.span**2 / total_w
        ok &= np.isfinite(resid) & _probe_finite(family, public, win.k_last)
        results[family] = (public, np.where(ok, resid, np.inf))
    (sub_p, sub_r), (exp_p, exp_r) = results["sublinear"], results["exponential"]
    # Ties go to sublinear, as in the reference (it is tried first and needs a strictly
    # smaller residual to be replaced).
    pick_sub = sub_r <= exp_r
    usable = np.isfinite(np.minimum(sub_r, exp_r))
    both = np.column_stack(
        [
            np.where(np.isfinite(sub_r)[:, None], sub_p, np.nan),
            np.where(np.isfinite(exp_r)[:, None], exp_p, np.nan),
        ]
    )
    # One comprehension builds every model: a loop body per job costs more at 4,000 jobs.
    fitted = [
        FittedLossModel("sublinear", f[:4], k, y, r_sub, k, f)
        if sub
        else FittedLossModel("exponential", f[4:], k, y, r_exp, k, f)
        for k, y, sub, r_sub, r_exp, f in zip(
            win.k_last.tolist(),
            win.last.tolist(),
            pick_sub.tolist(),
            sub_r.tolist(),
            exp_r.tolist(),
            map(tuple, both.tolist()),
            strict=True,
        )
    ]
    for row, model, use in zip(win.rows.tolist(), fitted, usable.tolist(), strict=True):
        if use:
            models[row] = model


def _probe_finite(family: str, public: np.ndarray, k_last: np.ndarray) -> np.ndarray:
    """Whether predictions 1, 10 and 100 iterations ahead are finite (the reference's probe)."""
    k = k_last[:, None] + np.concatenate([[0.0], _PROBE])[None, :]
    with np.errstate(all="ignore"):
        if family == "sublinear":
            a, b, c, d = (public[:, i : i + 1] for i in range(4))
            f = 1.0 / (a * k * k + b * k + c) + d
        else:
            amp, r, c = (public[:, i : i + 1] for i in range(3))
            f = amp * np.exp(-r * k) + c
        shift = f[:, 1:] - f[:, :1]
    return np.isfinite(shift).all(axis=1) & np.isfinite(public).all(axis=1)


def geometric_models(arrays: Sequence[np.ndarray]) -> list[LossModel]:
    """The prototype's geometric rule for every history, vectorized (``fit_geometric``)."""
    n = np.array([a.size for a in arrays], dtype=np.int64)
    # The last three losses of every history, right-aligned (zeros before a short history).
    used = np.minimum(n, 3)
    flat = np.concatenate([a[-3:] for a in arrays]) if arrays else np.zeros(0)
    tail = np.zeros((len(arrays), 3))
    tail[
        np.repeat(np.arange(n.size), used),
        np.arange(flat.size) - np.repeat(np.cumsum(used) - 3, used),
    ] = flat
    l3, prev, last = tail[:, 0], tail[:, 1], tail[:, 2]
    nf = n.astype(float)
    with np.errstate(all="ignore"):
        positive = (prev > 0) & (last > 0)
        ratio = last / prev
        r_pos = -np.log(ratio)
        ok_pos = positive & (ratio > 0) & (ratio < 1) & (n >= 2)
        d1, d2 = l3 - prev, prev - last
        ok_drop = ~positive & (n >= 3) & (d1 > 0) & (d2 > 0) & (d2 < d1)
        rho = d2 / d1
        r_drop = -np.log(rho)
        floor = np.where(ok_drop, last - d2 * rho / (1 - rho), 0.0)
        rate = np.where(ok_pos, r_pos, r_drop)
        amp = (last - floor) * np.exp(rate * nf)
    exponential = (ok_pos | ok_drop) & np.isfinite(amp) & (amp > 0)
    out: list[LossModel] = []
    columns = zip(
        exponential.tolist(), amp.tolist(), rate.tolist(), floor.tolist(), nf.tolist(),
        last.tolist(), strict=True,
    )  # fmt: skip
    for is_exp, a, r, f, k, y in columns:
        if is_exp:
            out.append(LossModel("exponential", (a, r, f), k, y))
        else:
            out.append(LossModel("constant", (), k, y))
    return out
