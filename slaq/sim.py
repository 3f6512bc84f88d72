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

from slaq.jobstate import PENDING, JobState
from slaq.loop import DecisionStep, EpochInfo, no_lock, run_loop, run_metadata
from slaq.policy import Decision, Policy
from slaq.predict import RuntimeModel
from slaq.sim_jobs import (
    DEFAULT_OVERHEAD_S,
    SimJob,
    sim_jobs_from_pool,
    sim_jobs_from_trace,
    sim_jobs_from_workload,
    synthetic_curve,
)
from slaq.traces import AllocationRow, TraceRow, write_run

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OVERHEAD_S",
    "SimDriver",
    "SimJob",
    "SimResult",
    "run_simulation",
    "sim_jobs_from_pool",
    "sim_jobs_from_trace",
    "sim_jobs_from_workload",
    "simulate_to_dir",
    "synthetic_curve",
]


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
