"""One-hidden-layer perceptron with softmax cross-entropy and L2, trained by L-BFGS.

One reported loss per accepted L-BFGS step (line-search trials are work, not iterations)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from slaq.algorithms.base import (
    ParamLayout,
    TrainContext,
    Trainer,
    as_f64,
    dense,
    logsumexp_rows,
    run_quasi_newton,
)

ACTIVATIONS = ("tanh", "relu")


def mlp_block(params: tuple[np.ndarray, ...], X: Any, y: np.ndarray) -> tuple:
    """Sums of cross-entropy and its gradient for (W1, b1, W2, b2, relu_flag)."""
    W1, b1, W2, b2, relu = params
    X = as_f64(X)
    A = dense(X @ W1) + b1
    H = np.maximum(A, 0.0) if relu else np.tanh(A)
    Z = H @ W2 + b2
    rows = np.arange(Z.shape[0])
    labels = np.asarray(y, dtype=np.intp)
    lse = logsumexp_rows(Z)
    loss = float(np.sum(lse - Z[rows, labels]))
    dZ = np.exp(Z - lse[:, None])
    dZ[rows, labels] -= 1.0
    dH = dZ @ W2.T
    dA = dH * (A > 0) if relu else dH * (1.0 - H * H)
    return (
        float(Z.shape[0]),
        loss,
        dense(X.T @ dA),
        dA.sum(axis=0),
        H.T @ dZ,
        dZ.sum(axis=0),
    )


class MLPTrainer(Trainer):
    """d-hidden-K network; objective = mean cross-entropy + reg/2 (||W1||^2 + ||W2||^2)."""

    algorithm: ClassVar[str] = "mlp"
    defaults: ClassVar[dict[str, Any]] = {"hidden": 16, "reg": 1e-4, "activation": "tanh"}

    def _validate(self) -> None:
        if self.n_outputs < 2:
            raise ValueError(f"mlp: n_outputs (classes) must be >= 2, got {self.n_outputs}")
        hidden = self.params["hidden"]
        if isinstance(hidden, bool) or not isinstance(hidden, int | np.integer) or hidden < 1:
            raise ValueError(f"mlp: hidden must be a positive integer, got {hidden!r}")
        self.hidden = int(hidden)
        self.reg = self._positive("reg", allow_zero=True)
        if self.params["activation"] not in ACTIVATIONS:
            raise ValueError(
                f"mlp: activation must be one of {ACTIVATIONS}, got {self.params['activation']!r}"
            )
        self.relu = self.params["activation"] == "relu"
        d, h, k = self.n_features, self.hidden, self.n_outputs
        self.layout = ParamLayout([(d, h), (h,), (h, k), (k,)])

    def initial_params(self) -> np.ndarray:
        """Seeded Glorot-uniform weights and zero biases, as one flat vector."""
        rng = np.random.default_rng(self.seed)
        d, h, k = self.n_features, self.hidden, self.n_outputs
        lim1, lim2 = math.sqrt(6.0 / (d + h)), math.sqrt(6.0 / (h + k))
        W1 = rng.uniform(-lim1, lim1, size=(d, h))
        W2 = rng.uniform(-lim2, lim2, size=(h, k))
        return self.layout.pack([W1, np.zeros(h), W2, np.zeros(k)])

    def run(self, ctx: TrainContext) -> None:
        """L-BFGS with a Wolfe line search; one report per accepted step."""
        layout, reg, relu = self.layout, self.reg, self.relu

        def evaluate(theta: np.ndarray) -> tuple[float, np.ndarray]:
            W1, b1, W2, b2 = layout.unpack(theta)
            n, loss, g1, gb1, g2, gb2 = ctx.map_reduce(mlp_block, (W1, b1, W2, b2, relu))
            f = loss / n + 0.5 * reg * (float(np.sum(W1 * W1)) + float(np.sum(W2 * W2)))
            grad = layout.pack([g1 / n + reg * W1, gb1 / n, g2 / n + reg * W2, gb2 / n])
            return f, grad

        def hold(theta: np.ndarray) -> None:
            self.result = tuple(a.copy() for a in layout.unpack(theta))

        # Limited memory whatever the size: the network's curvature changes along the path.
        run_quasi_newton(ctx, self.initial_params(), evaluate, hold, dense=False)
