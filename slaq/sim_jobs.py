"""Jobs for the simulator: synthetic curves, replays of recorded runs, draws from a pool.

Each :class:`SimJob` carries a loss-per-iteration curve and its work per iteration; the
simulator (:mod:`slaq.sim`) runs them through the same decision loop as the live engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from slaq.workload import JobSpec, Workload, WorkloadError, poisson_arrivals

DEFAULT_OVERHEAD_S = 0.05


@dataclass(frozen=True)
class SimJob:
    """A job as the simulator replays it."""

    spec: JobSpec
    losses: np.ndarray
    work_s: float
    overhead_s: float = DEFAULT_OVERHEAD_S
    # Tasks the job can use at most (its block count live; None: unbounded).
    max_cores: int | None = None

    def iteration_s(self, cores: int) -> float:
        """Ground-truth seconds per iteration on ``cores`` cores."""
        return self.work_s / cores + self.overhead_s


# --------------------------------------------------------------------------- loss curves


def synthetic_curve(curve: Mapping[str, Any], n: int, seed: int) -> np.ndarray:
    """Loss after each of ``n`` iterations for a synthetic family, seeded per job.

    Families: ``sublinear`` (``1/(a k^2 + b k + c) + d``), ``exponential`` (``A mu^k + c``),
    ``noisy`` (a smooth curve times ``1 + noise * N(0, 1)``, default 5%), ``plateau`` (flat for
    ``plateau`` iterations, then a sublinear drop). Any parameter can be pinned in ``curve``.
    """
    rng = np.random.default_rng(seed)
    k = np.arange(1, n + 1, dtype=float)
    family = curve.get("family", "sublinear")

    def pick(name: str, low: float, high: float) -> float:
        return float(curve[name]) if name in curve else float(rng.uniform(low, high))

    def sublinear(kk: np.ndarray) -> np.ndarray:
        a, b = pick("a", 0.0005, 0.02), pick("b", 0.05, 1.0)
        c, d = pick("c", 0.5, 2.0), pick("d", 0.05, 0.5)
        return 1.0 / (a * kk * kk + b * kk + c) + d

    def exponential(kk: np.ndarray) -> np.ndarray:
        amp, mu, c = pick("amp", 0.5, 2.0), pick("mu", 0.85, 0.98), pick("floor", 0.05, 0.5)
        return amp * mu**kk + c

    if family == "sublinear":
        return sublinear(k)
    if family == "exponential":
        return exponential(k)
    if family == "noisy":
        base = sublinear(k) if curve.get("base", "sublinear") == "sublinear" else exponential(k)
        noise = float(curve.get("noise", 0.05))
        return base * (1.0 + noise * rng.standard_normal(n))
    if family == "plateau":
        length = int(curve.get("plateau", max(1, int(rng.uniform(0.15, 0.35) * n))))
        top = pick("top", 1.0, 2.0)
        drift = 1e-4 * top
        flat = top - drift * k[:length]
        tail_k = np.arange(1, n - length + 1, dtype=float)
        tail = sublinear(tail_k)
        tail = tail - tail[0] + flat[-1] - drift if tail.size else tail
        return np.concatenate([flat, tail])
    raise WorkloadError(f"unknown synthetic curve family {family!r}")


def sim_jobs_from_workload(workload: Workload, seed: int) -> list[SimJob]:
    """Synthetic-curve jobs from a workload whose jobs carry ``curve`` specs."""
    out = []
    for spec in workload.jobs:
        if spec.curve is None:
            raise WorkloadError(
                f"workload {workload.name!r}: job {spec.job_id!r}: field 'curve' is required "
                "for simulation (or replay a live trace with --trace)"
            )
        losses = synthetic_curve(spec.curve, spec.max_iter, seed * 1_000_003 + spec.seed)
        overhead = float(spec.curve.get("overhead_s", DEFAULT_OVERHEAD_S))
        out.append(SimJob(spec, losses, spec.work_s, overhead))
    return out


def sim_jobs_from_trace(
    trace: pd.DataFrame, run_jobs: Mapping[str, Mapping[str, Any]] | None = None
) -> list[SimJob]:
    """Jobs replaying a recorded run: same arrivals, losses per iteration and costs.

    ``run_jobs`` (run.json's ``jobs``) gives each job's block count, its core ceiling live.
    A job's work per iteration is its median task CPU time; its fixed overhead per iteration
    (Spark's job latency, the barrier) is the median of what its wall time exceeded
    ``cpu / cores``, so that replayed iterations take as long as the recorded ones.
    """
    out = []
    for job_id, rows in trace.sort_values(["job_id", "iteration"]).groupby("job_id", sort=True):
        first = rows.iloc[0]
        losses = rows["loss"].to_numpy(float)
        cpu = rows["cpu_s"].to_numpy(float)
        cores = np.maximum(rows["cores"].to_numpy(float), 1.0)
        wall = (rows["t_end_s"] - rows["t_start_s"]).to_numpy(float)
        work = float(np.median(cpu[cpu > 0])) if np.any(cpu > 0) else 1.0
        overhead = float(max(np.median(wall - cpu / cores), 0.0)) if wall.size else 0.0
        spec = JobSpec(
            job_id=str(job_id),
            algorithm=str(first["algorithm"]),
            dataset=str(first["dataset"]),
            arrival_s=float(first["arrival_s"]),
            max_iter=len(losses),
            tol=0.0,
        )
        blocks = (run_jobs or {}).get(str(job_id), {}).get("blocks")
        out.append(SimJob(spec, losses, work, overhead, None if blocks is None else int(blocks)))
    return sorted(out, key=lambda j: (j.spec.arrival_s, j.spec.job_id))


def sim_jobs_from_pool(
    pool: Sequence[SimJob],
    n_jobs: int,
    mean_interarrival_s: float,
    seed: int,
    work_scale: float = 1.0,
    overhead_s: float | None = None,
) -> list[SimJob]:
    """Paper-scale jobs: ``n_jobs`` curves drawn (seeded) from recorded jobs, Poisson arrivals.

    ``work_scale`` multiplies each job's recorded work per iteration, standing in for the
    larger datasets of a paper-scale cluster. ``overhead_s`` replaces the recorded fixed cost
    per iteration: on a small oversubscribed machine that cost is mostly waiting for a CPU,
    which a cluster with dedicated cores does not have.
    """
    if not pool:
        raise WorkloadError("cannot draw simulated jobs from an empty pool of recorded jobs")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(pool), size=n_jobs)
    arrivals = poisson_arrivals(n_jobs, mean_interarrival_s, seed + 1)
    width = len(str(max(n_jobs - 1, 0)))
    out = []
    for i, (p, arrival) in enumerate(zip(picks, arrivals, strict=True)):
        src = pool[int(p)]
        spec = replace(src.spec, job_id=f"s{i:0{width}d}", arrival_s=float(arrival))
        overhead = src.overhead_s if overhead_s is None else overhead_s
        out.append(SimJob(spec, src.losses, src.work_s * work_scale, overhead, src.max_cores))
    return out
