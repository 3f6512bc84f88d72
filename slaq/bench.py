"""Benchmarks of the scheduler itself: decision time, whole epochs and loss-prediction error.

``slaq bench overhead`` times the allocation step alone; ``slaq bench epoch``
(:mod:`slaq.bench_epoch`) a whole epoch, refits included; ``slaq bench prediction``
(:mod:`slaq.bench_prediction`) the prediction error on curves the fitter was not written for.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slaq.bench_epoch import check_sizes, epoch_benchmark, views
from slaq.bench_prediction import prediction_benchmark
from slaq.fitbatch import fit_loss_models
from slaq.policy import ClusterView, JobView, RuntimeFit, frozen_array
from slaq.scheduler import SlaqPolicy

log = logging.getLogger(__name__)


def synthetic_views(
    n_jobs: int, seed: int, history: int = 20, predictor: str = "geometric"
) -> list[JobView]:
    """Jobs with 1/k-like loss histories of random scale, as in the prototype's benchmark."""
    rng = np.random.default_rng(seed)
    k = np.arange(1, history + 1, dtype=float)
    histories, runtimes = [], []
    for _ in range(n_jobs):
        losses = rng.uniform(0.5, 2.0) / (k * rng.uniform(0.2, 1.0) + 1.0) + rng.uniform(0, 0.3)
        histories.append(frozen_array(losses))
        runtimes.append(RuntimeFit(float(rng.uniform(0.5, 4.0)), 0.05))
    models = fit_loss_models(histories, predictor)
    drops = [float(max(np.max(h[:-1] - h[1:]), 0.0)) for h in histories]
    return views(histories, models, runtimes, drops)


def overhead(
    jobs: Sequence[int],
    cores: Sequence[int],
    repeat: int = 5,
    predictor: str = "geometric",
    implementations: Sequence[str] = ("fast", "heap"),
    seed: int = 0,
    heap_limit: int = 100_000_000,
    min_cores: int = 0,
) -> dict[str, Any]:
    """Decision time of SLAQ's allocation step, fast and heap side by side in one run.

    Loss models are fitted once (batched) before timing, as the decision loop hands them to the
    policy; ``slaq bench epoch`` times the refits too. Heap runs
    whose jobs x cores exceed ``heap_limit`` are skipped. ``min_cores`` defaults to 0 so that
    every core goes through the greedy step (with the prototype's floor of 3, 4,000 jobs would
    exhaust 4,096 cores before the greedy step starts).
    """
    check_sizes(jobs=jobs, cores=cores, repeat=repeat)
    results = []
    for n in jobs:
        t0 = time.perf_counter()
        views = synthetic_views(n, seed, predictor=predictor)
        fit_ms = (time.perf_counter() - t0) * 1e3
        for c in cores:
            cluster = ClusterView(total_cores=c, epoch_s=3.0, now_s=0.0)
            row: dict[str, Any] = {"jobs": n, "cores": c, "fit_all_ms": fit_ms}
            allocs = {}
            for impl in implementations:
                if impl == "heap" and n * c > heap_limit:
                    continue
                policy = SlaqPolicy(predictor=predictor, implementation=impl, min_cores=min_cores)
                times = []
                for _ in range(repeat):
                    t = time.perf_counter()
                    allocs[impl] = dict(policy.allocate(cluster, views).cores)
                    times.append((time.perf_counter() - t) * 1e3)
                row[f"{impl}_p50_ms"] = float(np.percentile(times, 50))
                row[f"{impl}_p99_ms"] = float(np.percentile(times, 99))
                log.info("jobs=%d cores=%d %s p50=%.1f ms", n, c, impl, row[f"{impl}_p50_ms"])
            if len(allocs) == 2:
                row["same_allocation"] = allocs["fast"] == allocs["heap"]
                row["speedup_p50"] = row["heap_p50_ms"] / row["fast_p50_ms"]
            results.append(row)
    return {"predictor": predictor, "repeat": repeat, "min_cores": min_cores, "results": results}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The ``slaq bench`` sub-command: validate, run the chosen benchmark, return its JSON."""
    check_sizes(repeat=args.repeat)
    if args.kind == "overhead":
        return overhead(
            args.jobs, args.cores, args.repeat, args.predictor, min_cores=args.min_cores
        )
    if args.kind == "epoch":
        return epoch_benchmark(
            args.jobs,
            args.cores,
            repeat=args.repeat,
            seed=args.seed,
            reference_jobs=args.reference_jobs,
        )
    # A run found under --live-root and also named with --trace is scored once.
    runs = [*_live_runs(Path(args.live_root)), *[Path(t) for t in args.trace]]
    return prediction_benchmark(
        seed=args.seed,
        traces=list({run.resolve(): run for run in runs}.values()),
        library=Path(args.library) if args.library else None,
    )


def _live_runs(root: Path) -> list[Path]:
    """Run directories under ``root`` that hold a trace (none if ``root`` does not exist)."""
    runs = sorted(p.parent for p in root.glob("*/trace.parquet"))
    log.info("%d recorded live runs under %s", len(runs), root)
    return runs
