"""How far one seeded GMM run lands from scikit-learn's best of 50 (issue: trainers, item 4).

For each (dataset, k): scikit-learn's ``GaussianMixture`` (diagonal, the trainer's variance floor
as ``reg_covar``) with ``n_init=50`` gives the reference mean negative log-likelihood; then ten
seeds of our trainer (300 EM iterations in-process, 24 blocks) and ten seeds of scikit-learn's
own single run (``n_init=1``, k-means init) are scored against it. The JSON says how many of each
land within 2% (the trainers issue asks for 9 of 10). Ours chooses its start among k-means++
draws by successive halving of EM on a sample (slaq.algorithms.clustering.select_mixture_start).

    python benchmarks/gmm_init.py --data-dir datasets/cache --out results/benchmarks/gmm_init.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from slaq.algorithms import make_trainer
from slaq.algorithms.clustering import VAR_FLOOR
from slaq.blocks import LocalContext, write_blocks
from slaq.datasets import load_dataset

log = logging.getLogger("gmm_init")
CASES = (("digits", 5, None), ("fashion-mnist-clusters", 16, 2500))
SEEDS = range(10)


def _ours(X: np.ndarray, k: int, seed: int, work: Path) -> float:
    """Final objective (mean NLL) of one seeded run of the trainer, in-process."""
    blocks = write_blocks(X, None, work / f"gmm-{k}-{seed}", 24, overwrite=True)
    trainer = make_trainer("gmm", X.shape[1], k, {"k": k}, seed)
    ctx = LocalContext(blocks, max_iter=300)
    trainer.run(ctx)
    return float(ctx.objectives[-1])


def _sklearn(X: np.ndarray, k: int, n_init: int, seed: int) -> float:
    """Mean NLL of scikit-learn's diagonal GMM with the same variance floor."""
    model = GaussianMixture(
        k, covariance_type="diag", n_init=n_init, reg_covar=VAR_FLOOR, max_iter=500,
        random_state=seed,
    )  # fmt: skip
    return float(-model.fit(X).score(X))


def run_case(name: str, k: int, rows: int | None, data_dir: Path) -> dict[str, Any]:
    """Reference, our ten seeds and scikit-learn's ten single runs, relative to the reference."""
    data = load_dataset(name, cache_dir=data_dir, max_rows=rows, seed=0)
    X = np.asarray(data.X, np.float32).astype(np.float64)  # what the blocks hold
    best = _sklearn(X, k, 50, 0)
    with tempfile.TemporaryDirectory() as tmp:
        ours = [_ours(X, k, s, Path(tmp)) for s in SEEDS]
    single = [_sklearn(X, k, 1, s) for s in SEEDS]

    def rel(values: list[float]) -> list[float]:
        return [(v - best) / abs(best) for v in values]

    out = {"dataset": name, "k": k, "rows": int(X.shape[0]), "sklearn_best_of_50": best}
    for label, values in (("ours", ours), ("sklearn_n_init_1", single)):
        gaps = rel(values)
        out[label] = {
            "final": values,
            "gap": gaps,
            "within_2pct": int(sum(g <= 0.02 for g in gaps)),
        }
    log.info("%s k=%d: within 2%% ours %d/10, sklearn single %d/10", name, k,
             out["ours"]["within_2pct"], out["sklearn_n_init_1"]["within_2pct"])  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    """Run every case at one BLAS thread and write the JSON atomically."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("datasets/cache"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with threadpool_limits(limits=1):
        cases = [run_case(name, k, rows, args.data_dir) for name, k, rows in CASES]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"target": "within 2% for 9 of 10 seeds", "cases": cases}, indent=1))
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
