"""Independent objectives (plain numpy, no slaq code) shared by the trainer tests."""

import numpy as np


def as_seen(X):
    """The float32-rounded matrix the blocks hold, in float64."""
    return np.asarray(X, np.float32).astype(np.float64)


def logloss(X, y, W, b, reg):
    """Mean log-loss + reg/2 ||W||^2; binary (labels > 0 positive) when W is a vector."""
    Z = X @ W + b
    if Z.ndim == 1:
        t = (y > 0).astype(float)
        return np.mean(np.logaddexp(0.0, Z) - t * Z) + reg / 2 * W @ W
    Zmax = Z.max(1, keepdims=True)
    lse = Zmax[:, 0] + np.log(np.exp(Z - Zmax).sum(1))
    return np.mean(lse - Z[np.arange(len(y)), y.astype(int)]) + reg / 2 * np.sum(W**2)


def hinge(X, y, w, b, reg):
    """Mean hinge + reg/2 (||w||^2 + b^2) (intercept regularized, as LIBLINEAR)."""
    s = np.where(y > 0, 1.0, -1.0)
    return np.mean(np.maximum(0.0, 1.0 - s * (X @ w + b))) + reg / 2 * (w @ w + b * b)


def ridge(X, y, w, b, reg):
    """Mean half squared error + reg/2 ||w||^2 (free intercept)."""
    r = X @ w + b - y
    return 0.5 * np.mean(r * r) + reg / 2 * w @ w


def mlp(X, y, params, reg, relu=False):
    """Mean cross-entropy of a one-hidden-layer net + reg/2 (||W1||^2 + ||W2||^2)."""
    W1, b1, W2, b2 = params
    A = X @ W1 + b1
    H = np.maximum(A, 0) if relu else np.tanh(A)
    Z = H @ W2 + b2
    Zmax = Z.max(1, keepdims=True)
    lse = Zmax[:, 0] + np.log(np.exp(Z - Zmax).sum(1))
    ce = np.mean(lse - Z[np.arange(len(y)), y.astype(int)])
    return ce + reg / 2 * (np.sum(W1**2) + np.sum(W2**2))


def wcss(X, centers):
    """Sum of squared distances to the nearest center, one center at a time."""
    best = np.full(X.shape[0], np.inf)
    for c in centers:
        best = np.minimum(best, np.sum((X - c) ** 2, axis=1))
    return float(best.sum())


def gmm_nll(X, means, variances, weights):
    """Mean negative log-likelihood of a diagonal Gaussian mixture."""
    comps = []
    for m, v, w in zip(means, variances, weights, strict=True):
        comps.append(np.log(w) - 0.5 * np.sum(np.log(2 * np.pi * v) + (X - m) ** 2 / v, axis=1))
    C = np.array(comps).T
    Cmax = C.max(1, keepdims=True)
    return -float(np.mean(Cmax[:, 0] + np.log(np.exp(C - Cmax).sum(1))))


def objective(algorithm, X, y, result, params):
    """The objective of ``result`` (a trainer's held model) for ``algorithm``."""
    reg = params.get("reg", 1e-3)
    if algorithm == "logreg":
        return logloss(X, y, result[0], result[1], reg)
    if algorithm == "svm":
        return hinge(X, y, result[0], result[1], reg)
    if algorithm == "linreg":
        return ridge(X, y, result[0], result[1], reg)
    if algorithm == "mlp":
        return mlp(X, y, result, params.get("reg", 1e-4), params.get("activation") == "relu")
    if algorithm == "kmeans":
        return wcss(X, result)
    if algorithm == "gmm":
        return gmm_nll(X, *result)
    raise ValueError(algorithm)
