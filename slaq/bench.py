"""Benchmarks of the scheduler itself: decision time and loss-prediction error."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slaq.policy import ClusterView, JobView
from slaq.predict import RuntimeModel
from slaq.quality import LossHistory
from slaq.scheduler import SlaqPolicy
from slaq.sim import synthetic_curve

log = logging.getLogger(__name__)


def synthetic_views(n_jobs: int, seed: int, history: int = 20) -> list[JobView]:
    """Jobs with 1/k-like loss histories of random scale, as in the prototype's benchmark."""
    rng = np.random.default_rng(seed)
    views = []
    for i in range(n_jobs):
        k = np.arange(1, history + 1, dtype=float)
        losses = rng.uniform(0.5, 2.0) / (k * rng.uniform(0.2, 1.0) + 1.0) + rng.uniform(0, 0.3)
        runtime = RuntimeModel(prior_work_s=float(rng.uniform(0.5, 4.0)))
        views.append(JobView(f"j{i}", 0.0, "synthetic", LossHistory(losses), runtime))
    return views


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

    Loss models are fitted once before timing (live and in simulation they are refitted when a
    loss arrives, not at decision time); the time to fit them is reported separately. Heap runs
    whose jobs x cores exceed ``heap_limit`` are skipped. ``min_cores`` defaults to 0 so that
    every core goes through the greedy step (with the prototype's floor of 3, 4,000 jobs would
    exhaust 4,096 cores before the greedy step starts).
    """
    results = []
    for n in jobs:
        views = synthetic_views(n, seed)
        t0 = time.perf_counter()
        for v in views:
            v.loss_model(predictor)
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
                    allocs[impl] = policy.allocate(cluster, views)
                    times.append((time.perf_counter() - t) * 1e3)
                row[f"{impl}_p50_ms"] = float(np.percentile(times, 50))
                row[f"{impl}_p99_ms"] = float(np.percentile(times, 99))
                log.info("jobs=%d cores=%d %s p50=%.1f ms", n, c, impl, row[f"{impl}_p50_ms"])
            if len(allocs) == 2:
                row["same_allocation"] = allocs["fast"] == allocs["heap"]
                row["speedup_p50"] = row["heap_p50_ms"] / row["fast_p50_ms"]
            results.append(row)
    return {"predictor": predictor, "repeat": repeat, "min_cores": min_cores, "results": results}


def prediction(
    families: Sequence[str] = ("sublinear", "exponential", "noisy", "plateau"),
    jobs_per_family: int = 10,
    length: int = 60,
    horizons: Sequence[int] = (1, 5, 10, 20),
    seed: int = 0,
    traces: Sequence[Path] = (),
) -> dict[str, Any]:
    """Loss-prediction error k iterations ahead, per predictor.

    Scored on the synthetic families and, per algorithm, on the loss curves of recorded runs.
    """
    from slaq.metrics import prediction_errors
    from slaq.traces import read_trace

    groups: dict[str, dict[str, np.ndarray]] = {}
    for fi, family in enumerate(families):
        groups[family] = {
            f"{family}-{i}": synthetic_curve({"family": family}, length, seed * 7919 + fi * 101 + i)
            for i in range(jobs_per_family)
        }
    for path in traces:
        trace = read_trace(Path(path)).sort_values(["job_id", "iteration"])
        for (algorithm, job_id), rows in trace.groupby(["algorithm", "job_id"]):
            groups.setdefault(f"live {algorithm}", {})[f"{path}:{job_id}"] = rows["loss"].to_numpy(
                float
            )
    out: dict[str, Any] = {"horizons": list(horizons), "families": {}}
    for family, curves in groups.items():
        errors = prediction_errors(curves, horizons=horizons, stride=3)
        if errors.empty:
            continue
        table = errors.groupby(["predictor", "horizon"])["rel_error"].agg(["median", "mean"])
        # Short recorded curves have no point far enough ahead for the longest horizons.
        families: dict[str, dict[str, Any]] = {}
        for (pred, h), row in table.iterrows():
            families.setdefault(pred, {})[str(h)] = {
                "median": float(row["median"]),
                "mean": float(row["mean"]),
            }
        out["families"][family] = families
    return out
