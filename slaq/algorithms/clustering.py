"""Clustering: k-means (Lloyd) and diagonal-covariance Gaussian mixtures (EM).

Both seed from a k-means++ pass over a sample of block 0 (one setup call that is not an
iteration). Each iteration is one pass that scores the current parameters (the reported
objective) and collects the sufficient statistics of the update.
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
    kmeanspp_block,
    logsumexp_rows,
    squared,
)

VAR_FLOOR = 1e-6
SEED_SAMPLE_ROWS = 2048


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

    def _seed(self, ctx: TrainContext) -> tuple[np.ndarray, np.ndarray]:
        centers, var = ctx.map_reduce(kmeanspp_block, (self.k, SEED_SAMPLE_ROWS, self.seed), [0])
        return np.asarray(centers, np.float64), np.asarray(var, np.float64)


class KMeansTrainer(_Clustering):
    """Lloyd's k-means; objective = WCSS of the centers before each update."""

    algorithm: ClassVar[str] = "kmeans"

    def run(self, ctx: TrainContext) -> None:
        """One assignment+sum pass per iteration; stops itself when centers stop moving."""
        centers, _ = self._seed(ctx)
        self.init_centers = centers.copy()
        self.result = centers
        try:
            while True:
                counts, sums, wcss = ctx.map_reduce(kmeans_block, centers)
                # An empty cluster keeps its old center (no data to move it).
                nonempty = counts > 0
                new = centers.copy()
                new[nonempty] = sums[nonempty] / counts[nonempty, None]
                # A Lloyd update never raises the WCSS, so the updated centers are the result.
                self.result = new
                ctx.report(wcss)
                if np.array_equal(new, centers):
                    return
                centers = new
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
        means, var = self._seed(ctx)
        # A feature that happens to be constant in the seeding sample would start with the
        # floor variance and give rows elsewhere an astronomically large first NLL, which then
        # dominates SLAQ's normalization by the largest drop; start it at a tenth of the mean.
        var = np.maximum(var, 0.1 * float(var.mean()))
        variances = np.tile(np.maximum(var, self.var_floor), (self.k, 1))
        weights = np.full(self.k, 1.0 / self.k)
        self.init_params = (means.copy(), variances.copy(), weights.copy())
        self.result = self.init_params
        try:
            while True:
                n, nk, sx, sxx, ll = ctx.map_reduce(gmm_block, (means, variances, weights))
                # The tiny additive guard (as scikit-learn) only matters for empty components.
                nk_safe = nk + 10.0 * np.finfo(np.float64).eps
                new_means = sx / nk_safe[:, None]
                new_var = np.maximum(sxx / nk_safe[:, None] - new_means**2, self.var_floor)
                means, variances, weights = new_means, new_var, nk_safe / nk_safe.sum()
                # EM never lowers the likelihood, so the updated parameters are the result.
                self.result = (means, variances, weights)
                ctx.report(-ll / n)
        except StopTraining:
            pass
