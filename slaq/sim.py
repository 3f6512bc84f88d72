"""Trace-replay simulator driving the same policy objects as the live engine (docs/design.md §2).

Each job carries a loss-per-iteration curve (replayed from a live trace, or drawn from a
synthetic family) and its work per iteration. A virtual cluster of ``C`` cores advances by
epochs of ``T`` seconds; at every epoch boundary the policy divides the cores, and a job on
``a`` cores completes an iteration every ``work_s / a + overhead_s`` seconds (work carries
over epoch boundaries). Same seed, same inputs: the same trace, bit for bit.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slaq.jobstate import FAILED, FINISHED, PENDING, JobState
from slaq.policy import ClusterView, Policy, validate_allocation
from slaq.predict import RuntimeModel
from slaq.traces import AllocationRow, TraceRow, environment_versions, write_run
from slaq.workload import JobSpec, Workload, WorkloadError

log = logging.getLogger(__name__)

DEFAULT_OVERHEAD_S = 0.05


@dataclass(frozen=True)
class SimJob:
    """A job as the simulator replays it."""

    spec: JobSpec
    losses: np.ndarray
    work_s: float
    overhead_s: float = DEFAULT_OVERHEAD_S

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


def sim_jobs_from_trace(trace: pd.DataFrame) -> list[SimJob]:
    """Jobs replaying a recorded run: same arrivals, losses per iteration and costs.

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
        out.append(SimJob(spec, losses, work, overhead))
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
    from dataclasses import replace

    from slaq.workload import poisson_arrivals

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
        out.append(SimJob(spec, src.losses, src.work_s * work_scale, overhead))
    return out


# --------------------------------------------------------------------------- the loop


@dataclass
class SimResult:
    """In-memory outcome of a simulation."""

    trace: list[TraceRow]
    allocations: list[AllocationRow]
    states: dict[str, JobState]
    decision_ms: list[float]
    end_s: float


def run_simulation(
    jobs: Sequence[SimJob],
    policy: Policy,
    *,
    cores: int,
    epoch_s: float,
    run_id: str = "sim",
    max_time_s: float | None = None,
    progress: bool = False,
) -> SimResult:
    """Replay ``jobs`` on a virtual cluster of ``cores`` cores under ``policy``."""
    if cores <= 0 or epoch_s <= 0:
        raise ValueError("cores and epoch must be positive")
    jobs = sorted(jobs, key=lambda j: (j.spec.arrival_s, j.spec.job_id))
    states = {j.spec.job_id: JobState(j.spec, RuntimeModel(prior_work_s=j.work_s)) for j in jobs}
    by_id = {j.spec.job_id: j for j in jobs}
    left = {j.spec.job_id: 1.0 for j in jobs}  # fraction of the current iteration still to do
    floor = int(getattr(policy, "min_cores", 0) or 0)
    last_arrival = jobs[-1].spec.arrival_s if jobs else 0.0
    if max_time_s is None:
        serial = sum(j.iteration_s(1) * j.losses.size for j in jobs)
        max_time_s = last_arrival + 10 * serial + 100 * epoch_s
    trace: list[TraceRow] = []
    allocations: list[AllocationRow] = []
    decisions: list[float] = []
    next_arrival = 0
    epoch = 0
    now = 0.0
    bar = _progress(len(jobs)) if progress else None
    while True:
        while next_arrival < len(jobs) and jobs[next_arrival].spec.arrival_s <= now + 1e-9:
            states[jobs[next_arrival].spec.job_id].start(now)
            next_arrival += 1
        active = [s for s in states.values() if s.active]
        if not active:
            if next_arrival >= len(jobs):
                break
            # Idle cluster: jump to the epoch boundary at or after the next arrival.
            steps = math.ceil((jobs[next_arrival].spec.arrival_s - now) / epoch_s - 1e-9)
            now += steps * epoch_s
            epoch += steps
            continue
        if now > max_time_s:
            raise RuntimeError(
                f"simulation under policy {policy.name!r} made no progress by t={now:.0f}s: "
                f"{len(active)} jobs still active (does the policy give them cores?)"
            )
        views = [s.view(floor, now) for s in active]
        cluster = ClusterView(total_cores=cores, epoch_s=epoch_s, now_s=now)
        t0 = time.perf_counter()
        raw = policy.allocate(cluster, views)
        decision_ms = (time.perf_counter() - t0) * 1e3
        decisions.append(decision_ms)
        alloc = validate_allocation(policy.name, raw, cluster, views)
        gains = getattr(policy, "last_gains", {}) or {}
        for state in active:
            state.cores = alloc[state.job_id]
            allocations.append(
                AllocationRow(
                    run_id,
                    policy.name,
                    epoch,
                    now,
                    state.job_id,
                    state.cores,
                    float(gains.get(state.job_id, math.nan)),
                    decision_ms,
                )
            )
        for state in active:
            _advance(state, by_id[state.job_id], left, now, epoch_s, run_id, policy.name, trace)
            if bar is not None and state.status in (FINISHED, FAILED):
                bar.update(1)
        now += epoch_s
        epoch += 1
    if bar is not None:
        bar.close()
    return SimResult(trace, allocations, states, decisions, now)


def _advance(
    state: JobState,
    job: SimJob,
    left: dict[str, float],
    now: float,
    epoch_s: float,
    run_id: str,
    policy: str,
    trace: list[TraceRow],
) -> None:
    """Run one job for one epoch on its allocation, recording completed iterations."""
    cores = state.cores
    if cores <= 0:
        return
    t_iter = job.iteration_s(cores)
    clock = now
    end = now + epoch_s
    while state.active:
        remaining = left[state.job_id] * t_iter
        if clock + remaining > end + 1e-12:
            left[state.job_id] -= (end - clock) / t_iter
            return
        start = clock - (1.0 - left[state.job_id]) * t_iter
        clock += remaining
        left[state.job_id] = 1.0
        i = len(state.history)
        if i >= job.losses.size:
            state.finish(clock)
            return
        row = state.record(
            run_id=run_id,
            policy=policy,
            loss=float(job.losses[i]),
            t_start_s=max(start, state.started_s or 0.0),
            t_end_s=clock,
            cores=cores,
            cpu_s=job.work_s + job.overhead_s * cores,
        )
        if row is not None:
            trace.append(row)
        if state.active and len(state.history) >= job.losses.size:
            state.finish(clock)


def _progress(total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="jobs finished", unit="job", leave=False)


def simulate_to_dir(
    jobs: Sequence[SimJob],
    policy: Policy,
    *,
    cores: int,
    epoch_s: float,
    seed: int,
    out_dir: Path,
    config: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> SimResult:
    """Run a simulation and write trace, allocations and run metadata (docs/design.md §3)."""
    run_id = f"sim-{policy.name}-{seed}-{uuid.uuid5(uuid.NAMESPACE_URL, str(out_dir)).hex[:8]}"
    started = time.time()
    result = run_simulation(
        jobs, policy, cores=cores, epoch_s=epoch_s, run_id=run_id, progress=progress
    )
    decisions = np.asarray(result.decision_ms) if result.decision_ms else np.zeros(1)
    meta = {
        "run_id": run_id,
        "mode": "simulation",
        "policy": policy.name,
        "policy_repr": repr(policy),
        "config": dict(config or {}),
        "seed": seed,
        "cores": cores,
        "epoch_s": epoch_s,
        "spark_master": None,
        "versions": environment_versions(),
        "start_time": started,
        "end_time": time.time(),
        "virtual_end_s": result.end_s,
        "exit_status": "ok",
        "decision_ms_p50": float(np.percentile(decisions, 50)),
        "decision_ms_p99": float(np.percentile(decisions, 99)),
        "jobs": {
            job_id: {"status": s.status, "failure": s.failure, "iterations": len(s.history)}
            for job_id, s in result.states.items()
        },
    }
    unfinished = [j for j, s in result.states.items() if s.status == PENDING]
    if unfinished:
        meta["exit_status"] = f"{len(unfinished)} jobs never started"
    write_run(out_dir, result.trace, result.allocations, meta)
    return result
