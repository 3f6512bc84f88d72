"""The one decision step and epoch loop, driven by a clock and an executor (docs/design.md §2).

The simulator (:mod:`slaq.sim`) and the live engine (:mod:`slaq.spark.live`) are thin drivers
around :func:`run_loop`: they differ only in their :class:`Driver` (a virtual clock advancing
iterations from a runtime model, or the wall clock and Spark). Everything a policy sees and
everything recorded about its decisions comes from :class:`DecisionStep`, once:

* loss models fitted for the policy's declared predictor, refitting only jobs with new losses
  (:class:`ModelBook`), and deep-frozen :class:`~slaq.policy.JobView` snapshots;
* the policy call, timed, with any exception wrapped as :class:`~slaq.policy.PolicyError`;
* validation, the allocation rows and the starvation clock of robust policies.

Event semantics are one switch honoured by both drivers: re-plan at every epoch tick, and (with
``replan_on_events``) also as soon as a job arrives or ends.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from slaq.fitbatch import fit_loss_models
from slaq.jobstate import FAILED, FINISHED, JobState
from slaq.policy import ClusterView, Decision, Policy, PolicyError, validate_decision
from slaq.predict import LossModel, needs_first_fit, refit_due
from slaq.traces import AllocationRow, environment_versions

# Arrival and tick comparisons tolerate float noise of the virtual clock.
EPS_S = 1e-9
# Due curve refits are batched every this many decisions (ModelBook).
REFIT_EVERY = 4


class ModelBook:
    """The loss model of every job for one predictor, refreshed only where losses changed.

    Owned by the loop, not by the policy (policies stay pure) nor by the job's history: a
    curve fit is refreshed on :func:`slaq.predict.refit_due`'s schedule and re-anchored at the
    latest loss in between, and all due fits of one decision run as one vectorized batch
    (:func:`slaq.fitbatch.fit_loss_models`, warm-started from each job's previous fit).

    A batch has a fixed cost of a few milliseconds whatever its size, and with dozens of jobs
    some job falls due at nearly every decision (one or two per batch in a 200-job simulation).
    So due refits are gathered: they run at every ``refit_every``-th decision (a fit is at most
    that many decisions late), and in between only jobs without a usable fit
    (:func:`slaq.predict.needs_first_fit`) are fitted at once (docs/design.md §2).

    With ``fit_on_report`` (the live engine) a job's own thread fits its curve as it reports a
    loss (:meth:`fit_reported`), on the same schedule minus the gathering, so no fit stands in
    the way of an epoch's decision; a decision then only re-anchors the last fit (one that is
    still being computed lands a few milliseconds later). The simulator's clock stands still
    while it decides, so it fits in the decision and gathers to save its own CPU time.
    """

    def __init__(
        self, predictor: str | None, refit_every: int = REFIT_EVERY, fit_on_report: bool = False
    ) -> None:
        if refit_every < 1:
            raise ValueError(f"refit_every must be at least 1, got {refit_every}")
        self.predictor = predictor
        self.refit_every = refit_every
        self.fit_on_report = fit_on_report
        self._models: dict[str, LossModel] = {}
        self._decisions = 0
        # Job threads install fits while the deciding thread reads and re-anchors.
        self._lock = threading.Lock()

    def refresh(self, states: Sequence[JobState]) -> list[LossModel | None]:
        """Models for ``states`` (in order), fitting or re-anchoring the ones that changed."""
        if self.predictor is None:
            return [None] * len(states)
        gather = self._decisions % self.refit_every == 0
        self._decisions += 1
        due: list[JobState] = []
        models: dict[str, LossModel] = {}
        for state in states:
            model = self._models.get(state.job_id)
            n = len(state.history)
            if model is not None and model.k_now == n:
                models[state.job_id] = model
            elif self._fit_now(n, model, gather):
                due.append(state)
            else:
                rebased = model.rebase(n, state.history.last)
                # Live, only the job's thread writes its model; the decision's anchor is its own.
                models[state.job_id] = (
                    rebased if self.fit_on_report else self._install(state.job_id, rebased)
                )
        if due:
            histories = [s.frozen_losses() for s in due]
            warm = [self._models.get(s.job_id) for s in due]
            fitted = fit_loss_models(histories, self.predictor, warm=warm)
            for state, model in zip(due, fitted, strict=True):
                models[state.job_id] = self._install(state.job_id, model)
        return [models[s.job_id] for s in states]

    def fit_reported(self, state: JobState) -> None:
        """Fit or re-anchor ``state``'s model after it reported a loss (the job's own thread)."""
        if self.predictor is None or not self.fit_on_report:
            return
        losses = state.frozen_losses()
        if losses.size == 0:
            return
        model = self._models.get(state.job_id)
        if model is not None and model.k_now >= losses.size:
            return
        if self.predictor == "curvefit" and not refit_due(losses.size, model):
            self._install(state.job_id, model.rebase(losses.size, losses[-1]))
            return
        (fitted,) = fit_loss_models([losses], self.predictor, warm=[model])
        self._install(state.job_id, fitted)

    def _fit_now(self, n: int, model: LossModel | None, gather: bool) -> bool:
        """Whether the decision must fit this job itself rather than re-anchor its last fit."""
        if model is None:
            return True  # not even a first fit yet (live: its first loss is still being fitted)
        if self.fit_on_report:
            return False
        urgent = self.predictor != "curvefit" or needs_first_fit(n, model)
        return urgent or (gather and refit_due(n, model))

    def _install(self, job_id: str, model: LossModel) -> LossModel:
        """Keep ``model`` unless a newer one landed meanwhile; returns the one kept."""
        with self._lock:
            old = self._models.get(job_id)
            if old is None or (model.k_now, model.fitted_at) > (old.k_now, old.fitted_at):
                self._models[job_id] = model
                return model
            return old


@dataclass
class DecisionStep:
    """Snapshots, policy call, validation and the allocation record: the same in both drivers."""

    policy: Policy
    run_id: str
    epoch_s: float
    # The live engine's job threads fit their own curves as they report (ModelBook).
    fit_on_report: bool = False
    allocations: list[AllocationRow] = field(default_factory=list)
    decision_ms: list[float] = field(default_factory=list)
    # CPU time of the deciding thread: the policy's own cost. Live, the wall time above also
    # counts waiting for the GIL behind the job threads (pickling, Py4J) on the driver.
    decision_cpu_ms: list[float] = field(default_factory=list)
    book: ModelBook = field(init=False)

    def __post_init__(self) -> None:
        self.traits = self.policy.traits
        self.book = ModelBook(self.traits.predictor, fit_on_report=self.fit_on_report)

    def __call__(self, active: Sequence[JobState], total: int, now: float, epoch: int) -> Decision:
        """Decide the cores of every active job at ``now``; sets ``state.cores``."""
        floor = self.traits.min_cores
        for state in active:
            if state.cores > floor:  # served through ``now``: the starvation clock restarts
                state.last_served_s = now
        cluster = ClusterView(total_cores=total, epoch_s=self.epoch_s, now_s=now)
        t0, c0 = time.perf_counter(), time.thread_time()
        models = self.book.refresh(active)
        views = [s.view(m, now) for s, m in zip(active, models, strict=True)]
        try:
            raw = self.policy.allocate(cluster, views)
        except PolicyError:
            raise
        except Exception as exc:
            raise PolicyError(f"policy {self.policy.name!r} failed: {exc!r}") from exc
        elapsed_ms = (time.perf_counter() - t0) * 1e3
        self.decision_cpu_ms.append((time.thread_time() - c0) * 1e3)
        decision = validate_decision(self.policy.name, raw, cluster, views)
        self.decision_ms.append(elapsed_ms)
        for state in active:
            state.cores = decision.cores[state.job_id]
            gain = decision.gains.get(state.job_id, math.nan)
            self.allocations.append(
                AllocationRow(
                    self.run_id,
                    self.policy.name,
                    epoch,
                    now,
                    state.job_id,
                    state.cores,
                    float(gain),
                    elapsed_ms,
                )  # fmt: skip
            )
        return decision


@dataclass
class EpochInfo:
    """What the loop decided at one decision point (for progress bars and callbacks)."""

    epoch: int
    t_s: float
    total_cores: int
    allocation: dict[str, int]
    active: int
    finished: int
    decision_ms: float


class Driver(Protocol):
    """A clock and an executor: what differs between the simulator and the live engine."""

    def now(self) -> float:
        """Seconds since the run started."""
        ...

    def lock(self) -> contextlib.AbstractContextManager[Any]:
        """Held while the loop reads job states and publishes a decision."""
        ...

    def capacity(self, now: float) -> int:
        """Cores available at an epoch tick (may raise to abort the run)."""
        ...

    def start_job(self, state: JobState, now: float) -> None:
        """A job arrived (its state is already marked running)."""
        ...

    def apply(self, decision: Decision, active: Sequence[JobState], tick: bool, now: float) -> None:
        """Enforce a decision (``state.cores`` is already set)."""
        ...

    def take_events(self) -> bool:
        """Whether a job ended since the last call (called with the lock held)."""
        ...

    def wait(self, until: float, stop_on_event: bool) -> None:
        """Let time pass until ``until``, or until a job ends if ``stop_on_event``."""
        ...


def run_loop(
    step: DecisionStep,
    driver: Driver,
    states: Sequence[JobState],
    *,
    replan_on_events: bool = True,
    on_decision: Callable[[EpochInfo], None] | None = None,
) -> int:
    """Run every job of ``states`` to its end; returns the number of decisions made."""
    pending = sorted(states, key=lambda s: (s.spec.arrival_s, s.job_id))
    epoch_s = step.epoch_s
    epoch, next_tick, total = 0, 0.0, 0
    while True:
        now = driver.now()
        tick = now >= next_tick - EPS_S
        if tick:
            next_tick = epoch_s * (math.floor(now / epoch_s + EPS_S) + 1)
            total = driver.capacity(now)
        info = None
        with driver.lock():
            arrived = _start_arrivals(pending, driver, now)
            active = [s for s in states if s.active]
            if not pending and not active:
                break
            ended = driver.take_events()
            if active and total > 0 and (tick or (replan_on_events and (arrived or ended))):
                decision = step(active, total, now, epoch)
                driver.apply(decision, active, tick, now)
                info = EpochInfo(
                    epoch, now, total, dict(decision.cores), len(active),
                    sum(s.status in (FINISHED, FAILED) for s in states), step.decision_ms[-1],
                )  # fmt: skip
                epoch += 1
        if info is not None and on_decision is not None:
            on_decision(info)
        wake = min(next_tick, pending[0].spec.arrival_s) if pending else next_tick
        driver.wait(wake, replan_on_events)
    return epoch


def _start_arrivals(pending: list[JobState], driver: Driver, now: float) -> bool:
    """Start every job whose arrival time has come (lock held)."""
    arrived = False
    while pending and pending[0].spec.arrival_s <= now + EPS_S:
        state = pending.pop(0)
        state.start(now)
        driver.start_job(state, now)
        arrived = True
    return arrived


@contextlib.contextmanager
def no_lock() -> Iterator[None]:
    """The simulator's lock: one thread, nothing to guard."""
    yield


def run_metadata(
    *,
    step: DecisionStep,
    mode: str,
    states: Mapping[str, JobState],
    config: Mapping[str, Any] | None,
    seed: int,
    cores: int,
    started: float,
    replan_on_events: bool,
    include_java: bool = False,
) -> dict[str, Any]:
    """The run.json fields both drivers write (each adds its own)."""
    decisions = np.asarray(step.decision_ms) if step.decision_ms else np.zeros(1)
    cpu = np.asarray(step.decision_cpu_ms) if step.decision_cpu_ms else np.zeros(1)
    failed = [j for j, s in states.items() if s.status == FAILED]
    return {
        "run_id": step.run_id,
        "mode": mode,
        "policy": step.policy.name,
        "policy_repr": repr(step.policy),
        "policy_traits": {
            "min_cores": step.traits.min_cores,
            "native_fair": step.traits.native_fair,
            "predictor": step.traits.predictor,
        },
        "config": dict(config or {}),
        "seed": seed,
        "cores": cores,
        "epoch_s": step.epoch_s,
        "replan_on_events": replan_on_events,
        "versions": environment_versions(include_java=include_java),
        "start_time": started,
        "end_time": time.time(),
        "exit_status": "ok" if not failed else f"{len(failed)} jobs failed",
        "decision_ms_p50": float(np.percentile(decisions, 50)),
        "decision_ms_p99": float(np.percentile(decisions, 99)),
        "decision_cpu_ms_p50": float(np.percentile(cpu, 50)),
        "decision_cpu_ms_p99": float(np.percentile(cpu, 99)),
        "decisions": len(step.decision_ms),
        "jobs": {
            job_id: {
                "status": s.status,
                "failure": s.failure,
                "iterations": len(s.history),
                "started_s": s.started_s,
                "finished_s": s.finished_s,
            }
            for job_id, s in states.items()
        },
    }
