"""Overhead of running an iteration on Spark, per algorithm (docs/design.md §7).

For each algorithm: the median iteration time of a single job holding every slot of a local
cluster (2 workers x 4 cores), the latency of a bare Spark job with the same number of tasks
(no-op tasks), and the same iteration in plain numpy in one process (LocalContext, one BLAS
thread). All on the same memory-mapped blocks of a seeded synthetic data set.

    python benchmarks/live_overhead.py --out results/live_overhead.json
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slaq.algorithms import make_trainer
from slaq.blocks import LocalContext
from slaq.policy import ClusterView, JobView, PolicyTraits
from slaq.spark.cluster import AttachedCluster, LocalSparkCluster, signals_as_exceptions
from slaq.spark.engine import (
    prepare_dataset,
    run_live,
    start_spark_context,
    stop_spark_context,
)
from slaq.traces import environment_versions, read_run, read_trace, write_json_atomic
from slaq.workload import parse_workload

log = logging.getLogger("live_overhead")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ALGORITHMS = ("logreg", "logreg_sgd", "svm", "linreg", "mlp", "kmeans", "gmm")


@dataclass
class AllCores:
    """Every core to every job (one job at a time here)."""

    name: str = "all-cores"
    traits: PolicyTraits = PolicyTraits()

    def allocate(self, cluster: ClusterView, jobs: Sequence[JobView]) -> Mapping[str, int]:
        """All cores to the single active job."""
        return {j.job_id: cluster.total_cores for j in jobs}


@dataclass
class SyntheticData:
    """Gaussian features, labels from a random linear teacher."""

    X: np.ndarray
    y: np.ndarray
    task: str = "multiclass"
    meta: dict[str, Any] = field(default_factory=dict)


def synthetic(rows: int, features: int, classes: int, seed: int) -> SyntheticData:
    """A seeded synthetic classification data set (float32)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features), dtype=np.float32)
    W = rng.standard_normal((features, classes)).astype(np.float32)
    y = np.argmax(X @ W + rng.standard_normal((rows, classes), dtype=np.float32), axis=1)
    return SyntheticData(X, y.astype(np.int32))


def binary(data: SyntheticData, classes: int) -> SyntheticData:
    """The same rows with labels split into two classes."""
    return SyntheticData(data.X, (data.y >= classes // 2).astype(np.int32), task="binary")


def dataset_for(algorithm: str) -> str:
    """Which synthetic data set an algorithm trains on."""
    return "synthetic-binary" if algorithm == "svm" else "synthetic"


def job_params(algorithm: str, classes: int) -> dict[str, Any]:
    """Hyper-parameters for one benchmark job."""
    return {"k": classes} if algorithm in ("kmeans", "gmm") else {}


def n_outputs(algorithm: str, classes: int) -> int:
    """Output width the engine would use for this algorithm."""
    if algorithm == "svm":
        return 2
    return 1 if algorithm == "linreg" else classes


class TimedLocalContext(LocalContext):
    """LocalContext that times each iteration (map_reduce start to report)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.times: list[float] = []
        self._t0 = 0.0

    def map_reduce(self, fn: Any, params: Any, blocks: Sequence[int] | None = None) -> tuple:
        """Time and forward."""
        self._t0 = time.perf_counter()
        return super().map_reduce(fn, params, blocks)

    def report(self, objective: float) -> None:
        """Record the iteration time, then forward."""
        self.times.append(time.perf_counter() - self._t0)
        super().report(objective)


def local_iteration_s(algorithm: str, blockset: Any, classes: int, iters: int) -> float:
    """Median iteration seconds in one process with one BLAS thread."""
    from threadpoolctl import threadpool_limits

    from slaq.algorithms import StopTraining

    trainer = make_trainer(
        algorithm,
        blockset.n_features,
        n_outputs(algorithm, classes),
        job_params(algorithm, classes),
        seed=1,
    )
    ctx = TimedLocalContext(blockset, max_iter=iters, tol=0.0)
    with threadpool_limits(limits=1), contextlib.suppress(StopTraining):
        trainer.run(ctx)
    return float(np.median(ctx.times[1:] or ctx.times))


def _noop(items: Iterator[int]) -> Iterator[int]:
    n = 0
    for _ in items:  # consume the whole iterator (docs/design.md §7)
        n += 1
    yield n


def bare_job_s(sc: Any, tasks: int, repeats: int) -> float:
    """Median latency of a Spark job of ``tasks`` no-op tasks over block-id-sized input."""
    times = []
    items = list(range(4 * tasks))
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        sc.parallelize(items, tasks).mapPartitions(_noop).collect()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the overhead benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--cluster", default="local", help="'local' or spark://HOST:PORT")
    parser.add_argument("--master-webui", help="web UI of an attached master")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores-per-worker", type=int, default=4)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--iters", type=int, default=15, help="iterations per measurement")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    data = synthetic(args.rows, args.features, args.classes, seed=0)
    results: dict[str, Any] = {}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="slaq-overhead-") as tmp, signals_as_exceptions():
        work = Path(tmp)
        if args.cluster == "local":
            cluster_cm: Any = LocalSparkCluster(
                workers=args.workers,
                cores_per_worker=args.cores_per_worker,
                log_dir=work / "cluster-logs",
            )
        else:
            cluster_cm = AttachedCluster(args.cluster, args.master_webui)
        with cluster_cm as cluster:
            cores = cluster.capacity()
            n_blocks = max(48, 4 * cores)
            # The SVM is a binary classifier: it trains on the teacher's classes split in two.
            sets = {"synthetic": data, "synthetic-binary": binary(data, args.classes)}
            blocks = {
                name: prepare_dataset(name, d, work / "data" / "blocks", n_blocks, 0)
                for name, d in sets.items()
            }
            sc = start_spark_context(cluster.master_url, total_cores=cores)
            try:
                bare: dict[int, float] = {}
                for algorithm in algorithms:
                    workload = parse_workload(
                        {
                            "jobs": [
                                {
                                    "id": algorithm,
                                    "algorithm": algorithm,
                                    "dataset": dataset_for(algorithm),
                                    "arrival_s": 0.0,
                                    "max_iter": args.iters,
                                    "tol": 0.0,
                                    "params": job_params(algorithm, args.classes),
                                }
                            ]
                        },
                        f"<{algorithm}>",
                    )
                    out = work / f"run-{algorithm}"
                    run_live(
                        workload,
                        AllCores(),
                        master_url=cluster.master_url,
                        total_cores=cores,
                        epoch_s=3.0,
                        seed=0,
                        out_dir=out,
                        data_dir=work / "data",
                        progress=False,
                        cpu_budget=False,
                        webui_url=cluster.webui_url,
                        n_blocks=n_blocks,
                        dataset_loader=sets.__getitem__,
                        spark_context=sc,
                    )
                    status = read_run(out)["jobs"][algorithm]
                    if status["status"] != "finished":
                        raise RuntimeError(f"{algorithm} failed on Spark: {status['failure']}")
                    trace = read_trace(out)
                    wall = (trace.t_end_s - trace.t_start_s).to_numpy()[1:]
                    local = local_iteration_s(
                        algorithm, blocks[dataset_for(algorithm)].blockset, args.classes, args.iters
                    )
                    results[algorithm] = {
                        "iterations": len(trace),
                        "spark_iteration_s": float(np.median(wall)),
                        "spark_iteration_cpu_s": float(trace.cpu_s.iloc[1:].median()),
                        "tasks": int(trace.cores.median()),
                        "local_numpy_iteration_s": local,
                        "spark_over_local": float(np.median(wall)) / local,
                    }
                    log.info(
                        "%-10s spark %.3fs/it (%d tasks), numpy %.3fs/it",
                        algorithm,
                        results[algorithm]["spark_iteration_s"],
                        results[algorithm]["tasks"],
                        local,
                    )
                # Bare jobs last, on a warm context, for every task count the iterations used.
                counts = {1, cores, *(r["tasks"] for r in results.values())}
                bare = {n: bare_job_s(sc, n, repeats=20) for n in sorted(counts)}
                for entry in results.values():
                    entry["bare_spark_job_s"] = bare[entry["tasks"]]
                    entry["spark_minus_bare_s"] = entry["spark_iteration_s"] - bare[entry["tasks"]]
                log.info("bare Spark job latency by task count: %s", bare)
            finally:
                stop_spark_context(sc)
            startup = getattr(cluster, "startup_s", None)
    summary = {
        "benchmark": "live_overhead",
        "config": vars(args),
        "cluster_startup_s": startup,
        "bare_spark_job_s": {str(k): v for k, v in bare.items()},
        "results": results,
        "host_cpus": len(os.sched_getaffinity(0)),
        "loadavg_after": os.getloadavg(),
        "duration_s": time.monotonic() - t_start,
        "versions": environment_versions(include_java=True),
    }
    write_json_atomic(summary, Path(args.out))
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
