"""The two curve families of :mod:`slaq.fitbatch` as batched array operations.

Each family provides, for parameter arrays of shape ``(jobs, p)`` in the rescaled window
coordinates of :class:`Window`: a cold start (``grid_start``), the weighted squared error
(``sse``), the Gauss-Newton normal equations (``normal``), a projection onto the constraints of
the reference fit (``project``) and conversions from and to the public parameters that
:class:`slaq.predict.LossModel` evaluates at absolute iteration numbers (docs/design.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import comb

import numpy as np

# Asymptote search range of the reference (slaq.predict._fit_one): floor = min - span * e^s.
_SUB_GRID = np.exp(np.linspace(-14.0, 4.0, 25))
_CANDIDATES = 3
# Decay per window (rho = r * h): from nearly linear to a drop of e^-100 across the window.
_EXP_GRID = np.geomspace(1e-3, 100.0, 33)
_RHO_MAX = 700.0  # e^rho must stay finite on the window
_RHO_MIN = 1e-10  # r > 0, as the reference requires
_C_MIN = 1e-12  # the reference's lower bound on c
_GOLDEN_STEPS = 16
# The linearized fit weighs (z + e)^_LIN_POWER: 2 as the reference (polyfit weights sw * gap);
# 4 would approximate least squares in z.
_LIN_POWER = 2


@dataclass(frozen=True)
class Window:
    """Rescaled, reversed fit windows of many jobs (column 0 = latest loss)."""

    rows: np.ndarray  # index of each row in the caller's list of histories
    z: np.ndarray  # (J, W) losses rescaled to [0, 1]; 0 where padded
    w: np.ndarray  # (J, W) recency weights; 0 where padded
    mask: np.ndarray  # (J, W) True where a loss exists
    ymin: np.ndarray  # (J,) window minimum
    span: np.ndarray  # (J,) window max - min (> 0)
    k_last: np.ndarray  # (J,) 1-based iteration number of the latest loss
    last: np.ndarray  # (J,) latest loss, exactly as reported
    v: np.ndarray  # (W,) iterations back divided by h
    h: float

    @property
    def vpow(self) -> np.ndarray:
        """``v**s`` for s = 0..4, shape (W, 5), for moments by matrix product."""
        return self.v[:, None] ** np.arange(5)[None, :]

    def take(self, idx: np.ndarray) -> Window:
        """The rows ``idx`` only (the same object when that is every row)."""
        if idx.size == self.z.shape[0]:
            return self
        return replace(
            self,
            rows=self.rows[idx],
            z=self.z[idx],
            w=self.w[idx],
            mask=self.mask[idx],
            ymin=self.ymin[idx],
            span=self.span[idx],
            k_last=self.k_last[idx],
            last=self.last[idx],
        )


# Up to this many systems LAPACK's batched solve beats the Cholesky below (27-70 vs 58-117 us).
SMALL_BATCH = 128


def solve_spd(a: np.ndarray, rhs: np.ndarray, ridge: np.ndarray | float = 0.0) -> np.ndarray:
    """Solve many small systems ``(A + ridge I) x = rhs`` after unit-diagonal scaling.

    A plain Cholesky over (J,) vectors: for 3x3 and 4x4 systems this is an order of magnitude
    faster than ``np.linalg.solve`` on a stack, and the scaling makes it Marquardt's step.
    """
    with np.errstate(all="ignore"):  # a non-finite step is rejected by the caller
        if rhs.shape[0] <= SMALL_BATCH:
            return _lapack_solve(a, rhs, ridge)
        return _cholesky_solve(a, rhs, ridge)


def _lapack_solve(a: np.ndarray, rhs: np.ndarray, ridge: np.ndarray | float) -> np.ndarray:
    """The same scaled system through LAPACK: fewer numpy calls, so faster on a few rows."""
    diag = np.sqrt(np.maximum(np.einsum("jii->ji", a), 1e-300))
    ridge = np.broadcast_to(np.asarray(ridge, float), (a.shape[0],)) + 1e-12
    scaled = a / (diag[:, :, None] * diag[:, None, :]) + ridge[:, None, None] * np.eye(a.shape[1])
    try:
        return np.linalg.solve(scaled, (rhs / diag)[..., None])[..., 0] / diag
    except np.linalg.LinAlgError:  # a singular row: the Cholesky floors its pivots instead
        return _cholesky_solve(a, rhs, ridge - 1e-12)


def _cholesky_solve(a: np.ndarray, rhs: np.ndarray, ridge: np.ndarray | float) -> np.ndarray:
    p = rhs.shape[1]
    m = np.ascontiguousarray(a.transpose(1, 2, 0))  # (p, p, J): entries as contiguous rows
    b = np.ascontiguousarray(rhs.T)
    diag = np.sqrt(np.maximum(np.stack([m[i, i] for i in range(p)]), 1e-300))
    low = [[None] * p for _ in range(p)]
    for i in range(p):
        for j in range(i + 1):
            s = m[i, j] / (diag[i] * diag[j])
            if i == j:
                s = s + ridge + 1e-12
            for k in range(j):
                s = s - low[i][k] * low[j][k]
            low[i][j] = np.sqrt(np.maximum(s, 1e-300)) if i == j else s / low[j][j]
    y = [None] * p
    for i in range(p):
        s = b[i] / diag[i]
        for k in range(i):
            s = s - low[i][k] * y[k]
        y[i] = s / low[i][i]
    x = [None] * p
    for i in reversed(range(p)):
        s = y[i]
        for k in range(i + 1, p):
            s = s - low[k][i] * x[k]
        x[i] = s / low[i][i]
    return (np.stack(x) / diag).T


# inner[i, j] = m4[4 - i - j] for the three window-polynomial coefficients.
_HANKEL = 4 - np.add.outer(np.arange(3), np.arange(3))


def _sub_linear(mom: np.ndarray, e: np.ndarray, win: Window) -> np.ndarray:
    """Linearized sublinear fit ``(ga, be, al)`` per row for floors ``d = -e`` (shape (J,))."""

    def expand(power: int, cols: int) -> np.ndarray:
        out = mom[power, :, :cols].copy()
        for q in range(power):
            out += comb(power, q) * e[:, None] ** (power - q) * mom[q, :, :cols]
        return out

    a4, rhs = expand(_LIN_POWER, 5), expand(_LIN_POWER - 1, 3)
    hank = np.empty((e.size, 3, 3))
    for i in range(3):
        for j in range(3):
            hank[:, i, j] = a4[:, i + j]
    with np.errstate(all="ignore"):
        return solve_spd(hank, rhs)


def _golden(f, lo: np.ndarray, hi: np.ndarray, steps: int) -> np.ndarray:
    """Vectorized golden-section search for the minimum of ``f`` on ``[lo, hi]`` per row."""
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo.astype(float), hi.astype(float)
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(steps):
        left = fc < fd  # minimum in [a, d]
        a, b = np.where(left, a, c), np.where(left, d, b)
        new = np.where(left, b - ratio * (b - a), a + ratio * (b - a))
        fn = f(new)
        c, d, fc, fd = (
            np.where(left, new, d),
            np.where(left, c, new),
            np.where(left, fn, fd),
            np.where(left, fc, fn),
        )
    return np.where(fc < fd, c, d)


class Sublinear:
    """``1 / (A u^2 + B u + C) + d``, ``u = k / h``, in z units; public ``1/(a k^2 + b k + c) + d``.

    Parameters are ``(A, B, C, d) = (a h^2, b h, c, d)`` (times the span), so the reference's
    constraints ``a, b >= 0, c > 0`` are plain bounds. Curves are evaluated in the window
    abscissa ``v = (K - k) / h`` as ``al v^2 + be v + ga``, which is well conditioned.
    """

    size = 4
    bounds = ((0, 0.0), (1, 0.0), (2, _C_MIN))

    @staticmethod
    def window_poly(p: np.ndarray, win: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(al, be, ga)`` of ``Q`` as a polynomial in v, from ``(A, B, C, ...)``."""
        kappa = win.k_last / win.h  # u = kappa - v
        a, b, c = p[..., 0], p[..., 1], p[..., 2]
        return a, -(2.0 * kappa * a + b), (kappa * a + b) * kappa + c

    @staticmethod
    def from_window_poly(al, be, ga, d, win: Window) -> np.ndarray:
        """``(A, B, C, d)`` from the window polynomial and floor."""
        kappa = win.k_last / win.h
        b = -be - 2.0 * kappa * al
        return np.stack([al, b, ga - (kappa * al + b) * kappa, d], axis=-1)

    def project(self, p: np.ndarray, win: Window) -> np.ndarray:
        """Clip to ``a, b >= 0, c > 0`` (the reference's constraints), so ``Q > 0`` for k > 0."""
        out = p.copy()
        for i, lower in self.bounds:
            out[:, i] = np.maximum(out[:, i], lower)
        return out

    def _inverse_q(self, p: np.ndarray, win: Window) -> np.ndarray:
        al, be, ga = self.window_poly(p, win)
        q = (al[:, None] * win.v + be[:, None]) * win.v + ga[:, None]
        # Padded columns may lie at k <= 0 where Q can vanish; their weight is 0 anyway.
        return 1.0 / np.where(win.mask, q, 1.0)

    def residuals(self, p: np.ndarray, win: Window) -> np.ndarray:
        """Curve minus loss at every window point, shape (J, W)."""
        with np.errstate(all="ignore"):
            return self._inverse_q(p, win) + (p[:, 3:4] - win.z)

    def sse(self, p: np.ndarray, win: Window) -> np.ndarray:
        """Weighted squared error of every row."""
        r = self.residuals(p, win)
        with np.errstate(all="ignore"):
            out = (win.w * r * r).sum(axis=1)
        return np.where(np.isfinite(out), out, np.inf)

    def normal(self, p: np.ndarray, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """Gauss-Newton matrix and gradient in ``(A, B, C, d)``.

        Derivatives in the window polynomial are ``-v^s / Q^2`` (moments by one matrix
        product); the chain rule ``d/dA = d/dal - 2 kappa d/dbe + kappa^2 d/dga``,
        ``d/dB = -d/dbe + kappa d/dga``, ``d/dC = d/dga`` maps them to the parameters.
        """
        iq = self._inverse_q(p, win)
        iq2 = iq * iq
        wq2 = win.w * iq2
        wr = win.w * (iq + (p[:, 3:4] - win.z))
        vp = win.vpow
        m4, m2, r2 = (wq2 * iq2) @ vp, wq2 @ vp[:, :3], (wr * iq2) @ vp[:, :3]
        n = p.shape[0]
        inner = np.empty((n, 4, 4))
        inner[:, :3, :3] = m4[:, _HANKEL]
        inner[:, :3, 3] = inner[:, 3, :3] = -m2[:, ::-1]
        inner[:, 3, 3] = win.w.sum(axis=1)
        grad_in = np.column_stack([-r2[:, 2], -r2[:, 1], -r2[:, 0], wr.sum(axis=1)])
        # Rows of the chain map: (A, B, C, d) from (ga, be, al, d) derivatives.
        k = win.k_last / win.h
        chain = np.zeros((n, 4, 4))
        chain[:, 0, 0], chain[:, 0, 1], chain[:, 0, 2] = 1.0, -2.0 * k, k * k
        chain[:, 1, 1], chain[:, 1, 2] = -1.0, k
        chain[:, 2, 2] = chain[:, 3, 3] = 1.0
        hess = chain @ inner @ chain.transpose(0, 2, 1)
        grad = (chain @ grad_in[:, :, None])[:, :, 0]
        return hess, grad

    def grid_start(self, win: Window) -> np.ndarray:
        """Starts ``(candidates, J, 4)``: a floor ``d = -e`` and a linearized fit for the rest.

        For a fixed floor, ``1 / (z + e)`` is quadratic in v; weighting that fit by
        ``(z + e)^4`` makes it approximate least squares in z, and its weighted moments are
        polynomials in e over moments of z (O(jobs) per trial floor). Each floor is scored by
        the true error of the constrained parameters, as in the reference; the error has
        several local minima, so a grid finds the best few, golden section refines each, and
        the caller polishes all of them.
        """
        mom = np.stack([win.w * win.z**q for q in range(5)]) @ win.vpow  # sum w z^q v^s
        s_grid = np.log(_SUB_GRID)
        n = win.z.shape[0]

        def tile(copies: int) -> tuple[np.ndarray, Window]:
            rows = np.tile(np.arange(n), copies)
            return rows, win.take(rows)

        def start(s: np.ndarray, rows: np.ndarray, tiled: Window) -> np.ndarray:
            # One call for every (candidate, job) pair: few large numpy calls, not many small.
            e = np.exp(s.ravel())
            theta = _sub_linear(mom[:, rows], e, tiled)  # (ga, be, al)
            p = self.from_window_poly(theta[:, 2], theta[:, 1], theta[:, 0], -e, tiled)
            return self.project(p, tiled)

        rows, tiled = tile(s_grid.size)
        grid = np.repeat(s_grid[:, None], n, axis=1)
        scores = self.sse(start(grid, rows, tiled), tiled).reshape(grid.shape)  # (G, J)
        pad = np.full((1, n), np.inf)
        ext = np.concatenate([pad, scores, pad])
        local = (scores <= ext[:-2]) & (scores <= ext[2:])
        order = np.argsort(np.where(local, scores, np.inf), axis=0)[:_CANDIDATES]
        lo, hi = s_grid[np.maximum(order - 1, 0)], s_grid[np.minimum(order + 1, s_grid.size - 1)]
        rows, tiled = tile(order.shape[0])

        def error(s: np.ndarray) -> np.ndarray:
            return self.sse(start(s, rows, tiled), tiled).reshape(s.shape)

        s_best = _golden(error, lo, hi, _GOLDEN_STEPS)
        return start(s_best, rows, tiled).reshape(*s_best.shape, 4)

    def to_public(self, p: np.ndarray, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b, c, d)`` of the loss itself, and whether they are usable."""
        s, h = win.span, win.h
        out = np.column_stack([p[:, 0] / (h * h * s), p[:, 1] / (h * s), p[:, 2] / s])
        out = np.column_stack([out, win.ymin + s * p[:, 3]])
        ok = np.isfinite(out).all(axis=1) & (out[:, 0] >= 0) & (out[:, 1] >= 0) & (out[:, 2] > 0)
        return out, ok

    def from_public(self, pub: np.ndarray, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """Parameters from public ones ``(a, b, c, d)`` (NaN rows where none), and which exist."""
        s, h = win.span[:, None], win.h
        p = np.column_stack([pub[:, :3] * s * np.array([h * h, h, 1.0]), pub[:, 3]])
        p[:, 3] = (pub[:, 3] - win.ymin) / win.span
        return p, np.isfinite(p).all(axis=1)


class Exponential:
    """``B e^(rho v) + c`` in window units; public ``A e^(-r k) + c``."""

    size = 3
    bounds = ((0, 1e-300), (1, _RHO_MIN))

    def project(self, p: np.ndarray, win: Window) -> np.ndarray:
        """``A > 0`` and ``r > 0`` as in the reference; bounded so that ``e^rho`` is finite."""
        rho = np.clip(p[:, 1], _RHO_MIN, _RHO_MAX)
        return np.column_stack([np.maximum(p[:, 0], 1e-300), rho, p[:, 2]])

    @staticmethod
    def _powers(p: np.ndarray, win: Window) -> np.ndarray:
        # e^(rho v) at v = m / h is q^m with q = e^(rho / h): doubling products instead of a
        # full-size exp, which is several times slower here.
        width = win.v.size
        out = np.empty((p.shape[0], width))
        out[:, 0] = 1.0
        q, filled = np.exp(p[:, 1] / win.h), 1
        while filled < width:
            n = min(filled, width - filled)
            out[:, filled : filled + n] = out[:, :n] * q[:, None]
            filled += n
            if filled < width:
                q = q * q
        return out

    def residuals(self, p: np.ndarray, win: Window) -> np.ndarray:
        """Curve minus loss at every window point, shape (J, W)."""
        with np.errstate(all="ignore"):
            return p[:, 0:1] * self._powers(p, win) + (p[:, 2:3] - win.z)

    def sse(self, p: np.ndarray, win: Window) -> np.ndarray:
        """Weighted squared error of every row."""
        r = self.residuals(p, win)
        with np.errstate(all="ignore"):
            out = (win.w * r * r).sum(axis=1)
        return np.where(np.isfinite(out), out, np.inf)

    def normal(self, p: np.ndarray, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """Gauss-Newton matrix and gradient; derivatives are ``E``, ``B v E`` and 1."""
        e = self._powers(p, win)
        amp = p[:, 0]
        with np.errstate(over="ignore", invalid="ignore"):  # steep decays: step rejected
            return self._normal(e, amp, p, win)

    def _normal(
        self, e: np.ndarray, amp: np.ndarray, p: np.ndarray, win: Window
    ) -> tuple[np.ndarray, np.ndarray]:
        we = win.w * e
        wr = win.w * (amp[:, None] * e + (p[:, 2:3] - win.z))
        vp = win.vpow
        ee, e1, re = (we * e) @ vp[:, :3], we @ vp[:, :2], (wr * e) @ vp[:, :2]
        hess = np.empty((p.shape[0], 3, 3))
        hess[:, 0, 0] = ee[:, 0]
        hess[:, 0, 1] = hess[:, 1, 0] = amp * ee[:, 1]
        hess[:, 1, 1] = amp * amp * ee[:, 2]
        hess[:, 0, 2] = hess[:, 2, 0] = e1[:, 0]
        hess[:, 1, 2] = hess[:, 2, 1] = amp * e1[:, 1]
        hess[:, 2, 2] = win.w.sum(axis=1)
        grad = np.column_stack([re[:, 0], amp * re[:, 1], wr.sum(axis=1)])
        return hess, grad

    def grid_start(self, win: Window) -> np.ndarray:
        """Start ``(1, J, 3)``: the best decay on a grid, B and c by weighted linear fit."""
        table = np.exp(_EXP_GRID[:, None] * win.v[None, :])  # (G, W), shared by all jobs
        w, wz = win.w, win.w * win.z
        s_ee, s_e, t_e = w @ (table * table).T, w @ table.T, wz @ table.T
        s1, t1, tzz = w.sum(axis=1)[:, None], wz.sum(axis=1)[:, None], (wz * win.z).sum(axis=1)
        with np.errstate(all="ignore"):
            det = s_ee * s1 - s_e * s_e
            amp = (t_e * s1 - s_e * t1) / det
            c = (s_ee * t1 - s_e * t_e) / det
            rss = tzz[:, None] - amp * t_e - c * t1
        rss = np.where((amp > 0) & (det > 0) & np.isfinite(rss), rss, np.inf)
        best = np.argmin(rss, axis=1)
        rows = np.arange(best.size)
        none = ~np.isfinite(rss[rows, best])
        amp_b = np.where(none, 1e-300, amp[rows, best])
        c_b = np.where(none, t1[:, 0] / s1[:, 0], c[rows, best])
        return self.project(np.column_stack([amp_b, _EXP_GRID[best], c_b]), win)[None]

    def to_public(self, p: np.ndarray, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(A, r, c)`` of the loss itself, and whether they are usable."""
        with np.errstate(all="ignore"):
            log_amp = np.log(win.span * p[:, 0]) + p[:, 1] * win.k_last / win.h
            out = np.column_stack([np.exp(log_amp), p[:, 1] / win.h, win.ymin + win.span * p[:, 2]])
        ok = np.isfinite(out).all(axis=1) & (out[:, 0] > 0) & (out[:, 1] > 0)
        return out, ok

    def from_public(self, pub: np.ndarray, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """Parameters from public ones ``(A, r, c)`` (NaN rows where none), and which exist."""
        with np.errstate(all="ignore"):
            amp = np.exp(np.log(pub[:, 0]) - pub[:, 1] * win.k_last) / win.span
            p = np.column_stack([amp, pub[:, 1] * win.h, (pub[:, 2] - win.ymin) / win.span])
        return p, np.isfinite(p).all(axis=1) & (p[:, 0] > 0)


FAMILY_OPS = {"sublinear": Sublinear(), "exponential": Exponential()}
