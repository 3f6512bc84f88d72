"""Trainer benchmark: iterations to 1e-2 / 1e-3 of an independent optimum, CPU per iteration.

For every template of config/config.yaml's live.workload.templates, in process at one BLAS
thread on a seeded row subsample: the trainer's curve against an optimum of the same objective
from scipy / scikit-learn (logreg: scipy L-BFGS-B; svm: LinearSVC's primal value or the
trainer's best, whichever is lower; linreg: lstsq; kmeans / gmm: scikit-learn's best of several
restarts; mlp is non-convex and has none).

    python benchmarks/trainers.py --rows 3000 --out results/benchmarks/trainers.json
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from slaq.algorithms import make_trainer
from slaq.blocks import LocalContext, write_blocks
from slaq.datasets import load_dataset
from slaq.traces import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("trainers")


def _logreg_optimum(X: np.ndarray, y: np.ndarray, k: int, reg: float) -> float:
    """scipy L-BFGS-B on the plain-numpy logreg objective (binary if k == 2)."""
    n, d = X.shape
    Y = np.eye(k)[y]

    def fg(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = theta[: d * k].reshape(d, k), theta[d * k :]
        Z = X @ W + b
        Z -= Z.max(1, keepdims=True)
        P = np.exp(Z)
        s = P.sum(1, keepdims=True)
        f = np.mean(np.log(s[:, 0]) - np.sum(Z * Y, 1)) + reg / 2 * np.sum(W * W)
        R = (P / s - Y) / n
        return f, np.concatenate([(X.T @ R + reg * W).ravel(), R.sum(0)])

    # Binary logreg with a sigmoid equals 2-class softmax with one class' weights pinned at 0;
    # the softmax form with both free has the same optimum only without regularization, so
    # the binary case pins class 0.
    if k == 2:
        bounds = [(0, 0) if j % 2 == 0 else (None, None) for j in range(d * 2)]
        bounds += [(0, 0), (None, None)]
    else:
        bounds = None
    opts = {"maxiter": 20_000, "ftol": 1e-15, "gtol": 1e-10}
    res = minimize(
        fg, np.zeros(d * k + k), jac=True, method="L-BFGS-B", bounds=bounds, options=opts
    )
    return float(res.fun)


def _optimum(alg: str, X: np.ndarray, y: np.ndarray, k: int, params: dict) -> float | None:
    """An independent optimum of the objective the trainer reports (None for mlp)."""
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture
    from sklearn.svm import LinearSVC

    reg, n = float(params.get("reg", 1e-3)), len(X)
    if alg == "logreg":
        return _logreg_optimum(X, y, k, reg)
    if alg == "linreg":
        A = np.vstack([np.hstack([X, np.ones((n, 1))]), np.sqrt(n * reg) * np.eye(X.shape[1] + 1)])
        A[-1, -1] = 0.0  # free intercept
        th = np.linalg.lstsq(A, np.concatenate([y, np.zeros(X.shape[1] + 1)]), rcond=None)[0]
        r = X @ th[:-1] + th[-1] - y
        return float(0.5 * np.mean(r * r) + reg / 2 * th[:-1] @ th[:-1])
    if alg == "svm":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            svc = LinearSVC(loss="hinge", C=1 / (reg * n), tol=1e-6, max_iter=5000).fit(X, y)
        w, b, s = svc.coef_.ravel(), svc.intercept_[0], np.where(y > 0, 1.0, -1.0)
        return float(np.mean(np.maximum(0, 1 - s * (X @ w + b))) + reg / 2 * (w @ w + b * b))
    if alg == "kmeans":
        return float(KMeans(k, n_init=10, random_state=0).fit(X).inertia_)
    if alg == "gmm":
        gm = GaussianMixture(k, covariance_type="diag", n_init=3, random_state=0, reg_covar=1e-6)
        return float(-gm.fit(X).score(X))
    return None


def bench_template(t: dict[str, Any], rows: int, iters: int, work: Path) -> dict[str, Any]:
    """Run one template's trainer on a subsample; iterations to 1e-2 / 1e-3, CPU per iteration."""
    alg, params = t["algorithm"], {k: v for k, v in t["params"].items() if k != "rows"}
    d = load_dataset(t["dataset"], cache_dir=ROOT / "datasets" / "cache", max_rows=rows, seed=0)
    X, y = np.asarray(d.X, np.float32).astype(np.float64), np.asarray(d.y)
    clustering = alg in ("kmeans", "gmm")
    k = int(params["k"]) if clustering else (1 if alg == "linreg" else int(y.max()) + 1)
    bs = write_blocks(X, None if clustering else y, Path(tempfile.mkdtemp(dir=work)) / "b", 12)
    ctx = LocalContext(bs, max_iter=iters)
    make_trainer(alg, X.shape[1], k, params, seed=0).run(ctx)
    losses = np.array(ctx.objectives)
    opt = _optimum(alg, X, y, k, params)
    if opt is not None and alg in ("svm", "kmeans"):
        # LinearSVC stopped early / heuristic restarts: the best value known is the reference.
        opt = min(opt, float(losses.min()))
    out = {"algorithm": alg, "dataset": t["dataset"], "rows": len(X), "iterations": len(losses)}
    out["cpu_s_per_iteration"] = float(np.mean(ctx.cpu_s))
    out["optimum"], out["final"] = opt, float(losses[-1])
    for rel in (1e-2, 1e-3):
        hit = None
        if opt is not None:
            hits = np.flatnonzero((losses - opt) / abs(opt) <= rel)
            hit = int(hits[0]) + 1 if hits.size else None
        out[f"iterations_to_{rel:g}"] = hit
    log.info("%s", out)
    return out


def main(argv: list[str] | None = None) -> None:
    """Benchmark every configured template and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3000, help="row subsample per data set")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/trainers.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    rows = []
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as tmp:
        for t in config["live"]["workload"]["templates"]:
            start = time.monotonic()
            rows.append(bench_template(t, args.rows, args.iterations, Path(tmp)))
            rows[-1]["wall_s"] = time.monotonic() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"rows": args.rows, "templates": rows}, args.out)


if __name__ == "__main__":
    main()
