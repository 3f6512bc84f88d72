"""Clustering: k-means (Lloyd) and diagonal-covariance Gaussian mixtures (EM).

Both seed from a seeded row sample of *every* block (one setup call that is not an iteration):
greedy k-means++ on the sample, best of a few draws. A pass scores the current
parameters and yields the next ones, so the objective of a step's result is only known one
pass later: iteration t reports the objective of the parameters it holds (those of step t),
measured by the pass that also computes step t+1 (docs/design.md §2).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from slaq.algorithms.base import (
    StopTraining,
    TrainContext,
    Trainer,
    as_f64,
    dense,
    logsumexp_rows,
    squared,
)
from slaq.algorithms.seeding import cluster_params, draw_centers, sample_rows_block, seed_clusters

VAR_FLOOR = 1e-6
SEED_SAMPLE_ROWS = 4096
# A mixture's start is chosen among this many k-means++ draws by successive halving: each
# round runs EM on the sample for twice the previous round's steps (2 at first) and keeps the
# best quarter: 112 EM steps on the sample in all. Why, measured: docs/design.md §2 (live
# engine), benchmarks/gmm_init.py.
MIXTURE_DRAWS, MIXTURE_FIRST_STEPS = 32, 2


def _row_sq_norms(X: Any) -> np.ndarray:
    if sp.issparse(X):
        return np.asarray(X.multiply(X).sum(axis=1)).ravel()
    return np.einsum("ij,ij->i", X, X)


def kmeans_block(centers: np.ndarray, X: Any, y: np.ndarray) -> tuple:
    """(counts, per-cluster sums, WCSS) of assigning the block's rows to the nearest center."""
    X = as_f64(X)
    n, k = X.shape[0], centers.shape[0]
    d2 = _row_sq_norms(X)[:, None] - 2.0 * dense(X @ centers.T) + np.sum(centers**2, axis=1)
    labels = np.argmin(d2, axis=1)
    wcss = float(np.sum(np.maximum(d2[np.arange(n), labels], 0.0)))
    # One-hot as a sparse matrix: the per-cluster sums become one O(n d) product.
    onehot = sp.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n))
    sums = dense(onehot @ X)
    return np.bincount(labels, minlength=k).astype(np.float64), sums, wcss


def gmm_block(params: tuple[np.ndarray, np.ndarray, np.ndarray], X: Any, y: np.ndarray) -> tuple:
    """(rows, resp sums, resp-weighted sums of x and x^2, log-likelihood) for a diag GMM."""
    means, variances, weights = params
    X = as_f64(X)
    prec = 1.0 / variances
    d = X.shape[1]
    # Expanded quadratic form so the K x d work is three matrix products (as scikit-learn).
    X2 = squared(X)
    quad = np.sum(means**2 * prec, axis=1) - 2.0 * dense(X @ (means * prec).T) + dense(X2 @ prec.T)
    log_prob = (
        -0.5 * (d * math.log(2.0 * math.pi) + quad)
        + 0.5 * np.sum(np.log(prec), axis=1)
        + np.log(weights)
    )
    ll = logsumexp_rows(log_prob)
    resp = np.exp(log_prob - ll[:, None])
    sx = dense(X.T @ resp).T
    sxx = dense(X2.T @ resp).T
    return float(X.shape[0]), resp.sum(axis=0), sx, sxx, float(ll.sum())


def gmm_m_step(nk: np.ndarray, sx: np.ndarray, sxx: np.ndarray, var_floor: float) -> tuple:
    """(means, variances, weights) from a pass's statistics (the M-step)."""
    # The tiny additive guard (as scikit-learn) only matters for empty components.
    nk_safe = nk + 10.0 * np.finfo(np.float64).eps
    means = sx / nk_safe[:, None]
    variances = np.maximum(sxx / nk_safe[:, None] - means**2, var_floor)
    return means, variances, nk_safe / nk_safe.sum()


def mixture_start(S: np.ndarray, centers: np.ndarray, var_floor: float) -> tuple:
    """A diagonal mixture's starting (means, variances, weights) from k-means++ centers."""
    means, var, weights = cluster_params(S, centers)
    # A feature that is constant inside a sampled cluster would start at the floor variance
    # and give rows elsewhere an astronomically large likelihood penalty; start every
    # variance at least at a tenth of the sample's mean variance.
    var = np.maximum(var, 0.1 * float(var.mean()))
    return means, np.maximum(var, var_floor), weights


def _em_on_sample(
    S: np.ndarray, params: tuple, stats: tuple | None, steps: int, var_floor: float
) -> tuple[tuple, tuple]:
    """(params, their pass statistics on S) after ``steps`` EM steps from ``params``.

    ``stats`` is the pass of ``params`` itself when known (a survivor of the previous round),
    so that pass is not repeated.
    """
    if stats is None:
        stats = gmm_block(params, S, None)
    for _ in range(steps):
        params = gmm_m_step(*stats[1:4], var_floor)
        stats = gmm_block(params, S, None)
    return params, stats


def select_mixture_start(S: np.ndarray, k: int, seed: int, var_floor: float) -> tuple:
    """The start, among ``MIXTURE_DRAWS`` k-means++ draws, whose EM on S goes furthest.

    A mixture's likelihood has many local optima and the k-means cost of a draw says little
    about which one EM reaches, so draws are compared by EM itself on the sample, by
    successive halving (see ``MIXTURE_DRAWS``): by the mean negative log-likelihood on S of
    where each got to. The job then starts from the winning draw as drawn, not from its EM on
    the sample: every step it reports is one it ran (the sample steps are set-up work on the
    driver, as scikit-learn's k-means initialisation is).
    """
    draws = draw_centers(S, k, seed, MIXTURE_DRAWS)
    starts = [mixture_start(S, c, var_floor) for c in draws]
    alive = [(i, starts[i], None) for i in range(len(starts))]
    steps = MIXTURE_FIRST_STEPS
    while True:
        alive = [(i, *_em_on_sample(S, p, st, steps, var_floor)) for i, p, st in alive]
        # Stable: ties keep the earlier draw. stats = (rows, nk, sx, sxx, log-likelihood).
        alive.sort(key=lambda cand: -cand[2][4] / cand[2][0])
        if len(alive) < 4:
            return starts[alive[0][0]]
        alive, steps = alive[: len(alive) // 4], 2 * steps


class _Clustering(Trainer):
    defaults: ClassVar[dict[str, Any]] = {"k": None}

    def _validate(self) -> None:
        k = self.params["k"]
        if k is None:
            k = self.n_outputs
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"{self.algorithm}: k must be a positive integer, got {k!r}")
        if int(k) != self.n_outputs:
            raise ValueError(f"{self.algorithm}: params k={k} but n_outputs={self.n_outputs}")
        self.k = int(k)

    def _sample(self, ctx: TrainContext) -> np.ndarray:
        """A seeded sample of the rows of all blocks (at least 4 per cluster)."""
        rate = min(1.0, max(SEED_SAMPLE_ROWS, 4 * self.k) / max(ctx.n_rows, 1))
        (rows,) = ctx.map_reduce(sample_rows_block, (rate, self.seed))
        sample = np.concatenate(rows) if rows else np.empty((0, self.n_features))
        if sample.shape[0] < self.k:
            raise ValueError(
                f"{self.algorithm}: k={self.k} clusters but only {sample.shape[0]} rows sampled"
                f" from {ctx.n_rows}"
            )
        return sample


class KMeansTrainer(_Clustering):
    """Lloyd's k-means; objective = WCSS of the centers the job holds."""

    algorithm: ClassVar[str] = "kmeans"

    def run(self, ctx: TrainContext) -> None:
        """One assignment+sum pass per iteration; stops itself when centers stop moving."""
        centers, _, _ = seed_clusters(self._sample(ctx), self.k, self.seed)
        self.init_centers = centers.copy()
        self.result = centers
        reported = False
        try:
            counts, sums, wcss = ctx.map_reduce(kmeans_block, centers)
            while True:
                # An empty cluster keeps its old center (no data to move it).
                nonempty = counts > 0
                new = centers.copy()
                new[nonempty] = sums[nonempty] / counts[nonempty, None]
                if np.array_equal(new, centers):
                    if not reported:  # the seeding was already a fixed point of Lloyd
                        ctx.report(wcss)
                    return
                counts, sums, wcss = ctx.map_reduce(kmeans_block, new)
                centers = new
                self.result = centers
                ctx.report(wcss)
                reported = True
        except StopTraining:
            pass


class GMMTrainer(_Clustering):
    """Diagonal-covariance Gaussian mixture by EM; objective = mean negative log-likelihood."""

    algorithm: ClassVar[str] = "gmm"
    defaults: ClassVar[dict[str, Any]] = {"k": None, "var_floor": VAR_FLOOR}

    def _validate(self) -> None:
        super()._validate()
        self.var_floor = self._positive("var_floor")

    def run(self, ctx: TrainContext) -> None:
        """One E-step+statistics pass per iteration, M-step on the driver."""
        params = select_mixture_start(self._sample(ctx), self.k, self.seed, self.var_floor)
        self.init_params = tuple(a.copy() for a in params)
        self.result = self.init_params
        try:
            _, nk, sx, sxx, _ = ctx.map_reduce(gmm_block, params)
            while True:
                params = gmm_m_step(nk, sx, sxx, self.var_floor)
                n, nk, sx, sxx, ll = ctx.map_reduce(gmm_block, params)
                # EM never lowers the likelihood; -ll/n is the objective of the held params.
                self.result = params
                ctx.report(-ll / n)
        except StopTraining:
            pass
