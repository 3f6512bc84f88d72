"""The same job on Spark (live engine, 2 slots) and in process reports the same losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slaq.algorithms import make_trainer
from slaq.curves import WindowContext
from slaq.datasets import load_dataset
from slaq.policy import load_policy
from slaq.spark.data import job_items, n_outputs_for, prepare_dataset
from slaq.spark.engine import run_live
from slaq.traces import read_run, read_trace
from slaq.workload import parse_workload

DATA_DIR = Path(__file__).resolve().parents[1] / "datasets" / "cache"
SEED, N_BLOCKS = 3, 8
# Iterations per algorithm: a Newton-CG logreg iteration is ~20 Spark passes.
ITERATIONS = {"logreg": 3, "kmeans": 8}


def _load(name: str):
    return load_dataset(name, cache_dir=DATA_DIR, seed=SEED)


@pytest.mark.spark
@pytest.mark.parametrize("algorithm,params", [("logreg", {"reg": 1e-3}), ("kmeans", {"k": 5})])
def test_spark_losses_equal_in_process_losses(
    spark_cluster, module_sc, tmp_path, algorithm, params
):
    iterations = ITERATIONS[algorithm]
    job = {"id": "a", "algorithm": algorithm, "dataset": "digits", "arrival_s": 0}
    job.update(max_iter=iterations, tol=0.0, params=params, seed=11)
    workload = parse_workload({"name": "spark-vs-local", "jobs": [job]}, "<test>")
    out = tmp_path / "run"
    run_live(
        workload,
        load_policy("fair"),
        master_url=spark_cluster.master_url,
        total_cores=2,
        epoch_s=1.0,
        seed=SEED,
        out_dir=out,
        progress=False,
        webui_url=spark_cluster.webui_url,
        max_time_s=240,
        auth_secret=spark_cluster.secret,
        n_blocks=N_BLOCKS,
        dataset_loader=_load,
        spark_context=module_sc,
    )
    assert read_run(out)["exit_status"] == "ok"
    spark = read_trace(out).sort_values("iteration").loss.to_numpy()
    # In process: the same shuffled block set (prepare_dataset is deterministic in the seed),
    # the job's windows (all rows), the engine's task body, the same trainer seed.
    spec = workload.jobs[0]
    data = prepare_dataset("digits", _load("digits"), tmp_path / "local", N_BLOCKS, SEED)
    items = job_items(data.blockset, None, (SEED, 0))
    ctx = WindowContext(data.blockset, items, iterations, iterations, 0.0)
    k = n_outputs_for(spec, data)
    make_trainer(algorithm, data.blockset.n_features, k, params, spec.seed).run(ctx)
    assert len(spark) == len(ctx.objectives) == iterations
    # Spark adds the tasks' partial sums in another order than the loop over blocks does, so
    # equal up to float64 rounding of the sums, not bit for bit.
    np.testing.assert_allclose(spark, ctx.objectives, rtol=1e-12, atol=0)
