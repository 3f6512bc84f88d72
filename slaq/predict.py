"""Loss-curve and iteration-time predictors (docs/design.md §1).

Loss models are anchored at the job's latest loss: ``predict_ahead(0)`` is exactly the last
observed loss, and predictions never increase with look-ahead. That keeps predicted gains
non-negative and concave in the iterations completed, which the greedy allocator relies on.

Families (``k`` is the 1-based iteration number):

* ``sublinear``:   ``f(k) = 1 / (a k^2 + b k + c) + d`` with ``a, b >= 0, c > 0``
* ``exponential``: ``f(k) = mu^(k - b) + c``, fitted in the equivalent form ``A e^(-r k) + c``
  (``mu = e^-r``, ``b = ln A / r``)
* ``constant``:    no further improvement predicted (too little or unusable history)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import curve_fit, minimize_scalar

PREDICTORS = ("curvefit", "geometric")
FAMILIES = ("constant", "sublinear", "exponential")
_FAMILY_CODE = {name: i for i, name in enumerate(FAMILIES)}

# Recent points get more weight: weight of the point i iterations back is RECENCY**i.
RECENCY = 0.9
MIN_WEIGHT = 0.05
# Fit on at most this many latest points; older ones barely matter with the decay above.
FIT_WINDOW = 40
MIN_POINTS_CURVEFIT = 5
# exp() of more overflows a float64.
_MAX_EXPONENT = 700.0


@dataclass(frozen=True)
class LossModel:
    """A fitted loss curve anchored at ``(k_now, loss_now)``."""

    family: str
    params: tuple[float, ...]
    k_now: float
    loss_now: float
    residual: float = 0.0
    fitted_at: float = 0.0

    def rebase(self, k_now: float, loss_now: float) -> LossModel:
        """The same curve shape anchored at a newer point (cheap stand-in for a refit)."""
        return replace(self, k_now=float(k_now), loss_now=float(loss_now))

    def raw(self, k: np.ndarray) -> np.ndarray:
        """The fitted curve itself at absolute iteration numbers ``k``."""
        return _evaluate(_FAMILY_CODE[self.family], np.asarray(self.params, float), k)

    def predict_ahead(self, dk: np.ndarray | float) -> np.ndarray:
        """Predicted loss after ``dk`` more iterations (non-increasing in ``dk``)."""
        dk = np.maximum(np.asarray(dk, dtype=float), 0.0)
        if self.family == "constant":
            return np.full_like(dk, self.loss_now)
        shift = self.raw(self.k_now + dk) - self.raw(np.asarray(self.k_now, float))
        return self.loss_now + np.minimum(shift, 0.0)


def _evaluate(code: int | np.ndarray, p: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Evaluate families row-wise: ``p`` has shape (..., 4), ``k`` broadcasts against it."""
    p = np.asarray(p, float)
    k = np.asarray(k, float)
    a, b, c, d = (p[..., i] for i in range(4)) if p.shape[-1] >= 4 else (*p[..., :3].T, 0.0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sub = 1.0 / (a * k * k + b * k + c) + d
        # Exponential stores (A, r, c, unused) in the same slots.
        exp = a * np.exp(-b * k) + c
    code = np.asarray(code)
    out = np.where(code == _FAMILY_CODE["sublinear"], sub, exp)
    return np.where(code == _FAMILY_CODE["constant"], 0.0, out)


class LossModelBatch:
    """Many loss models as arrays, so allocators can evaluate thousands at once."""

    def __init__(self, models: Sequence[LossModel]) -> None:
        # One pass building plain lists is several times faster than per-element array writes,
        # which matters at thousands of jobs per decision.
        pad = (0.0, 0.0, 0.0, 0.0)
        self.code = np.array([_FAMILY_CODE[m.family] for m in models], dtype=np.int8)
        self.params = np.array([(*m.params, *pad)[:4] for m in models], dtype=float).reshape(-1, 4)
        self.k_now = np.array([m.k_now for m in models], dtype=float)
        self.loss_now = np.array([m.loss_now for m in models], dtype=float)
        self._base = _evaluate(self.code, self.params, self.k_now)

    def predict_ahead(self, dk: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Predicted losses; ``dk`` has shape (n,) or (n, m), or matches ``rows`` if given."""
        sel = slice(None) if rows is None else rows
        dk = np.maximum(np.asarray(dk, float), 0.0)
        code, params, k_now = self.code[sel], self.params[sel], self.k_now[sel]
        base, loss_now = self._base[sel], self.loss_now[sel]
        if dk.ndim == 2:
            code, params, k_now = code[:, None], params[:, None, :], k_now[:, None]
            base, loss_now = base[:, None], loss_now[:, None]
        shift = _evaluate(code, params, k_now + dk) - base
        shift = np.where(np.isfinite(shift), np.minimum(shift, 0.0), 0.0)
        return loss_now + np.where(code == _FAMILY_CODE["constant"], 0.0, shift)


# --------------------------------------------------------------------------- fitting


def _constant(losses: np.ndarray) -> LossModel:
    last = float(losses[-1]) if losses.size else 0.0
    return LossModel("constant", (), float(losses.size), last)


def fit_geometric(losses: np.ndarray) -> LossModel:
    """The prototype's rule: extrapolate with the ratio of the last two losses.

    With positive losses ``L_{n+k} = L_n * (L_n / L_{n-1})^k``. Losses that are not positive
    (a Gaussian mixture's negative log-likelihood, say) have no meaningful ratio, so there the
    ratio of the last two *drops* continues the series instead. A rising or flat loss predicts
    no gain.
    """
    losses = np.asarray(losses, float)
    n = losses.size
    if n < 2:
        return _constant(losses)
    prev, last = losses[-2], losses[-1]
    if prev > 0 and last > 0:
        ratio = last / prev
        if not 0 < ratio < 1:
            return _constant(losses)
        r = -math.log(ratio)
        if r * n > _MAX_EXPONENT:
            # A sudden steep drop late in a long run: A = last e^{r n} is not representable
            # (the batched rule in slaq.fitbatch predicts no gain here too).
            return _constant(losses)
        # A e^{-r k} + 0 through (n, last).
        return LossModel("exponential", (last * math.exp(r * n), r, 0.0), float(n), float(last))
    if n < 3:
        return _constant(losses)
    d1, d2 = losses[-3] - prev, prev - last
    if not (d1 > 0 and 0 < d2 < d1):
        return _constant(losses)
    rho = d2 / d1
    r = -math.log(rho)
    if r * n > _MAX_EXPONENT:
        return _constant(losses)
    floor = last - d2 * rho / (1 - rho)
    return LossModel(
        "exponential", ((last - floor) * math.exp(r * n), r, floor), float(n), float(last)
    )


def _weights(n: int) -> np.ndarray:
    return np.maximum(RECENCY ** np.arange(n - 1, -1, -1, dtype=float), MIN_WEIGHT)


def _sublinear(k: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    return 1.0 / (a * k * k + b * k + c) + d


def _exponential(k: np.ndarray, amp: float, r: float, c: float) -> np.ndarray:
    return amp * np.exp(-r * k) + c


def _linearized(family: str, k: np.ndarray, y: np.ndarray, w: np.ndarray, floor: float):
    """Best parameters for a fixed asymptote: both families are linear in a transform of y."""
    gap = np.maximum(y - floor, 1e-300)
    sw = np.sqrt(w)
    if family == "sublinear":
        # 1 / (y - d) = a k^2 + b k + c
        a, b, c = np.polyfit(k, 1.0 / gap, 2, w=sw * gap)
        return (max(a, 0.0), max(b, 0.0), max(c, 1e-12), floor)
    # log(y - c) = log A - r k
    slope, icpt = np.polyfit(k, np.log(gap), 1, w=sw)
    return (math.exp(min(icpt, 700.0)), max(-slope, 1e-12), floor)


def _fit_one(family: str, k: np.ndarray, y: np.ndarray, w: np.ndarray) -> LossModel | None:
    """Variable projection: 1-D search over the asymptote, closed form for the rest, then
    a weighted Levenberg-Marquardt polish of all parameters."""
    span = float(y.max() - y.min())
    if not span > 0:
        return None
    fn = _sublinear if family == "sublinear" else _exponential

    def params_at(s: float) -> tuple[float, ...]:
        return _linearized(family, k, y, w, float(y.min()) - span * math.exp(s))

    def loss(s: float) -> float:
        with np.errstate(all="ignore"):
            value = float(np.sum(w * (fn(k, *params_at(s)) - y) ** 2))
        return value if math.isfinite(value) else math.inf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best_s = minimize_scalar(
            loss, bounds=(-14.0, 4.0), method="bounded", options={"xatol": 1e-4}
        ).x
        p0 = params_at(best_s)
        try:
            popt, _ = curve_fit(fn, k, y, p0=p0, sigma=1.0 / np.sqrt(w), maxfev=200)
            if not np.sum(w * (fn(k, *popt) - y) ** 2) < np.sum(w * (fn(k, *p0) - y) ** 2):
                popt = np.asarray(p0)
        except (RuntimeError, ValueError, FloatingPointError):
            popt = np.asarray(p0)
    params = tuple(float(p) for p in popt)
    if family == "sublinear" and (params[0] < 0 or params[1] < 0 or params[2] <= 0):
        params = p0
    if family == "exponential" and (params[0] <= 0 or params[1] <= 0):
        params = p0
    with np.errstate(all="ignore"):
        fitted = fn(k, *params)
    if not np.all(np.isfinite(fitted)) or not all(math.isfinite(p) for p in params):
        return None
    resid = float(np.sum(w * (fitted - y) ** 2) / np.sum(w))
    return LossModel(family, tuple(params), float(k[-1]), float(y[-1]), resid, float(k[-1]))


def fit_curve(
    losses: np.ndarray, families: Sequence[str] = ("sublinear", "exponential")
) -> LossModel:
    """SLAQ's predictor: weighted least squares over both families, best weighted residual wins.

    Short histories (fewer than ``MIN_POINTS_CURVEFIT`` points) or failed fits fall back to the
    geometric rule; the result never yields NaN predictions.
    """
    losses = np.asarray(losses, float)
    n = losses.size
    if n < MIN_POINTS_CURVEFIT:
        return fit_geometric(losses)
    start = max(0, n - FIT_WINDOW)
    k = np.arange(start + 1, n + 1, dtype=float)
    y = losses[start:]
    w = _weights(y.size)
    best: LossModel | None = None
    for family in families:
        model = _fit_one(family, k, y, w)
        if model is not None and (best is None or model.residual < best.residual):
            best = model
    if best is None:
        return fit_geometric(losses)
    probe = best.predict_ahead(np.array([1.0, 10.0, 100.0]))
    if not np.all(np.isfinite(probe)):
        return fit_geometric(losses)
    return best


def refit_due(n: int, previous: LossModel | None) -> bool:
    """Whether a curve fit made at ``previous.fitted_at`` is too old for a history of ``n``.

    Fits are refreshed every iteration while the history is short or the fit is a constant,
    and then every ~n/8 iterations (re-anchored at the latest loss in between), which keeps
    thousands of simulated jobs cheap while tracking the curve closely.
    """
    if needs_first_fit(n, previous) or previous.family == "constant":
        return True
    return n - previous.fitted_at >= max(1, int(previous.fitted_at) // 8)


def needs_first_fit(n: int, previous: LossModel | None) -> bool:
    """Whether a job has no fit yet or too short a history for a curve (fewer than 10 losses).

    A loop that gathers due refits into periodic batches (:class:`slaq.loop.ModelBook`) must
    still fit these at once: a new job's first curve decides its first cores. (A flat job's
    constant fit can wait: it predicts no progress, and nor would a refit of a flat window.)
    """
    return previous is None or n < 2 * MIN_POINTS_CURVEFIT


def fit_loss_model(
    losses: np.ndarray, predictor: str = "curvefit", previous: LossModel | None = None
) -> LossModel:
    """Fit the named predictor (``curvefit`` or ``geometric``) to a loss history.

    For ``curvefit``, a ``previous`` fit that is still fresh (:func:`refit_due`) is re-anchored
    at the latest loss instead of refitted.
    """
    if predictor == "curvefit":
        losses = np.asarray(losses, float)
        if not refit_due(losses.size, previous):
            return previous.rebase(losses.size, losses[-1])
        return fit_curve(losses)
    if predictor == "geometric":
        return fit_geometric(losses)
    raise ValueError(f"unknown loss predictor {predictor!r}; known: {', '.join(PREDICTORS)}")


# --------------------------------------------------------------------------- runtime


@dataclass
class RuntimeModel:
    """Iteration time ``t(n) = w / n + beta`` with ``w = alpha * S`` fitted per job.

    Before any observation the prior ``(prior_work_s, prior_overhead_s)`` is used. With a single
    distinct core count the two terms cannot be separated, so ``beta`` keeps its prior and ``w``
    absorbs the rest; with two or more, non-negative least squares fits both.
    """

    prior_work_s: float = 1.0
    prior_overhead_s: float = 0.05
    observations: list[tuple[int, float]] = field(default_factory=list)
    _fit: tuple[float, float] | None = field(default=None, repr=False)

    def observe(self, cores: int, seconds: float) -> None:
        """Record one iteration that took ``seconds`` with ``cores`` tasks."""
        if cores > 0 and math.isfinite(seconds) and seconds >= 0:
            self.observations.append((int(cores), float(seconds)))
            self._fit = None

    @property
    def coefficients(self) -> tuple[float, float]:
        """Fitted ``(w, beta)``."""
        if self._fit is None:
            self._fit = self._solve()
        return self._fit

    def _solve(self) -> tuple[float, float]:
        if not self.observations:
            return self.prior_work_s, self.prior_overhead_s
        obs = np.asarray(self.observations[-50:], float)
        inv_n, t = 1.0 / obs[:, 0], obs[:, 1]
        if obs[:, 0].min() == obs[:, 0].max():  # one distinct core count (np.unique sorts)
            beta = min(self.prior_overhead_s, float(t.min()) * 0.5)
            w = max(float(np.mean((t - beta) / inv_n)), 1e-9)
            return w, beta
        w, beta = _nnls_two(inv_n, t)
        return max(w, 1e-9), beta

    def predict(self, cores: np.ndarray | float) -> np.ndarray:
        """Predicted seconds per iteration with ``cores`` tasks (infinite at 0 cores)."""
        w, beta = self.coefficients
        cores = np.asarray(cores, float)
        with np.errstate(divide="ignore"):
            return np.where(cores > 0, w / np.maximum(cores, 1e-300) + beta, np.inf)


def _nnls_two(x: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Non-negative least squares of ``t ~ w x + beta`` in closed form.

    With two unknowns the KKT conditions leave three candidates: the unconstrained solution if
    both are non-negative, else the best fit with one of them at zero. Same answer as
    ``scipy.optimize.nnls`` at a fraction of its per-call cost, which matters because the
    runtime model is refitted after every observed iteration of every job.
    """
    n = float(x.size)
    sx, st, sxx, sxt = float(x.sum()), float(t.sum()), float(x @ x), float(x @ t)
    det = n * sxx - sx * sx
    if det > 1e-12 * max(n * sxx, 1e-300):
        w = (n * sxt - sx * st) / det
        beta = (st - w * sx) / n
        if w >= 0 and beta >= 0:
            return w, beta
    only_w = max(sxt / sxx, 0.0) if sxx > 0 else 0.0
    only_beta = max(st / n, 0.0)
    err_w = float(np.sum((t - only_w * x) ** 2))
    err_beta = float(np.sum((t - only_beta) ** 2))
    return (only_w, 0.0) if err_w <= err_beta else (0.0, only_beta)
