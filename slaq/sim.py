"""Simulator: the decision loop of :mod:`slaq.loop` on a virtual clock (docs/design.md §2).

Each job carries a loss-per-iteration curve (replayed from a live trace, drawn from the curve
library, or from a synthetic family) and its work per iteration. The loop decides exactly as
it does live (epoch ticks, plus arrivals and job ends when ``replan_on_events``); between
decisions the :class:`SimDriver` advances iterations in time order. As on Spark, an iteration
runs with the cores its job held when it started (a new allocation applies from the next
iteration) and takes ``work_s / cores + overhead_s``. Same seed, same inputs: the same trace,
bit for bit.
"""

from __future__ import annotations

import heapq
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slaq.jobstate import PENDING, JobState
from slaq.loop import DecisionStep, EpochInfo, no_lock, run_loop, run_metadata
from slaq.policy import Decision, Policy
from slaq.predict import RuntimeModel
from slaq.traces import AllocationRow, TraceRow, write_run
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
        out.append(SimJob(spec, src.losses, src.work_s * work_scale, overhead, src.max_cores))
    return out


# --------------------------------------------------------------------------- the driver


@dataclass
class _Running:
    """The iteration a job is running: it keeps the cores it started with, as on Spark."""

    cores: int
    start_s: float
    end_s: float


@dataclass
class SimDriver:
    """Virtual clock and executor: iterations complete at ``work_s / cores + overhead_s``."""

    jobs: Mapping[str, SimJob]
    states: Mapping[str, JobState]
    cores: int
    run_id: str
    policy_name: str
    max_time_s: float
    trace: list[TraceRow] = field(default_factory=list)
    clock: float = 0.0
    _running: dict[str, _Running] = field(default_factory=dict)
    _heap: list[tuple[float, str]] = field(default_factory=list)
    _ended: bool = False

    def now(self) -> float:
        """Virtual seconds since the start."""
        return self.clock

    def lock(self) -> Any:
        """One thread: nothing to guard."""
        return no_lock()

    def capacity(self, now: float) -> int:
        """Fixed cluster size; aborts a run that makes no progress."""
        if now > self.max_time_s:
            active = sum(s.active for s in self.states.values())
            raise RuntimeError(
                f"simulation under policy {self.policy_name!r} made no progress by "
                f"t={now:.0f}s: {active} jobs still active (does the policy give them cores?)"
            )
        return self.cores

    def start_job(self, state: JobState, now: float) -> None:
        """Nothing to start: the job runs once it holds cores."""

    def apply(self, decision: Decision, active: Sequence[JobState], tick: bool, now: float) -> None:
        """Idle jobs that now hold cores start an iteration; running ones keep theirs."""
        for state in active:
            if state.cores > 0 and state.job_id not in self._running:
                self._begin(state, now)

    def take_events(self) -> bool:
        """Whether a job ended since the last call."""
        ended, self._ended = self._ended, False
        return ended

    def wait(self, until: float, stop_on_event: bool) -> None:
        """Complete iterations in time order up to ``until`` (or the first job end)."""
        while self._heap and self._heap[0][0] <= until + 1e-12:
            t, job_id = heapq.heappop(self._heap)
            run = self._running.pop(job_id)
            self.clock = t
            state = self.states[job_id]
            self._complete(state, run)
            if state.active and state.cores > 0:
                self._begin(state, t)
            elif not state.active:
                self._ended = True
                if stop_on_event:
                    return
        self.clock = max(self.clock, until)

    def _begin(self, state: JobState, now: float) -> None:
        job = self.jobs[state.job_id]
        end = now + job.iteration_s(state.cores)
        self._running[state.job_id] = _Running(state.cores, now, end)
        heapq.heappush(self._heap, (end, state.job_id))

    def _complete(self, state: JobState, run: _Running) -> None:
        job = self.jobs[state.job_id]
        i = len(state.history)
        if i >= job.losses.size:
            state.finish(run.end_s)
            return
        row = state.record(
            run_id=self.run_id,
            policy=self.policy_name,
            loss=float(job.losses[i]),
            t_start_s=run.start_s,
            t_end_s=run.end_s,
            cores=run.cores,
            cpu_s=job.work_s,
        )
        if row is not None:
            self.trace.append(row)
        if state.active and len(state.history) >= job.losses.size:
            state.finish(run.end_s)


# --------------------------------------------------------------------------- running


@dataclass
class SimResult:
    """In-memory outcome of a simulation."""

    trace: list[TraceRow]
    allocations: list[AllocationRow]
    states: dict[str, JobState]
    decision_ms: list[float]
    end_s: float
    step: DecisionStep


def run_simulation(
    jobs: Sequence[SimJob],
    policy: Policy,
    *,
    cores: int,
    epoch_s: float,
    run_id: str = "sim",
    max_time_s: float | None = None,
    replan_on_events: bool = True,
    progress: bool = False,
) -> SimResult:
    """Replay ``jobs`` on a virtual cluster of ``cores`` cores under ``policy``."""
    if cores <= 0 or epoch_s <= 0:
        raise ValueError("cores and epoch must be positive")
    jobs = sorted(jobs, key=lambda j: (j.spec.arrival_s, j.spec.job_id))
    states = {j.spec.job_id: _initial_state(j) for j in jobs}
    if max_time_s is None:
        last_arrival = jobs[-1].spec.arrival_s if jobs else 0.0
        serial = sum(j.iteration_s(1) * j.losses.size for j in jobs)
        max_time_s = last_arrival + 10 * serial + 100 * epoch_s
    step = DecisionStep(policy, run_id, epoch_s)
    driver = SimDriver(
        {j.spec.job_id: j for j in jobs}, states, cores, run_id, policy.name, max_time_s
    )
    bar = _progress(len(jobs)) if progress else None
    try:
        run_loop(
            step,
            driver,
            list(states.values()),
            replan_on_events=replan_on_events,
            on_decision=None if bar is None else (lambda info: _update_bar(bar, info)),
        )
    finally:
        if bar is not None:
            bar.close()
    return SimResult(driver.trace, step.allocations, states, step.decision_ms, driver.clock, step)


def _initial_state(job: SimJob) -> JobState:
    """A job's state with the same kind of prior the live engine gives it.

    Live, the prior is an estimate of the one-core work and Spark's measured fixed cost; here
    the job's declared work and the simulated platform's fixed cost. It matters only until the
    first iteration is observed (young jobs get the fair share anyway).
    """
    runtime = RuntimeModel(prior_work_s=job.work_s, prior_overhead_s=job.overhead_s)
    state = JobState(job.spec, runtime)
    state.max_cores = job.max_cores
    return state


def _progress(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="jobs finished", unit="job", leave=False)


def _update_bar(bar: Any, info: EpochInfo) -> None:
    bar.update(info.finished - bar.n)


def simulate_to_dir(
    jobs: Sequence[SimJob],
    policy: Policy,
    *,
    cores: int,
    epoch_s: float,
    seed: int,
    out_dir: Path,
    config: Mapping[str, Any] | None = None,
    replan_on_events: bool = True,
    progress: bool = False,
) -> SimResult:
    """Run a simulation and write trace, allocations and run metadata (docs/design.md §3)."""
    run_id = f"sim-{policy.name}-{seed}-{uuid.uuid5(uuid.NAMESPACE_URL, str(out_dir)).hex[:8]}"
    started = time.time()
    result = run_simulation(
        jobs,
        policy,
        cores=cores,
        epoch_s=epoch_s,
        run_id=run_id,
        replan_on_events=replan_on_events,
        progress=progress,
    )
    meta = run_metadata(
        step=result.step,
        mode="simulation",
        states=result.states,
        config=config,
        seed=seed,
        cores=cores,
        started=started,
        replan_on_events=replan_on_events,
    )
    meta["spark_master"] = None
    meta["virtual_end_s"] = result.end_s
    unfinished = [j for j, s in result.states.items() if s.status == PENDING]
    if unfinished:
        meta["exit_status"] = f"{len(unfinished)} jobs never started"
    write_run(out_dir, result.trace, result.allocations, meta)
    return result
