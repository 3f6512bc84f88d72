"""Per-job bookkeeping shared by the live engine and the simulator.

Both drivers keep one :class:`JobState` per job, feed it completed iterations, and hand
policies the :class:`~slaq.policy.JobView` snapshots it produces, so a policy sees exactly the
same kind of state live and in simulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from slaq.algorithms.base import ConvergenceRule
from slaq.policy import JobView
from slaq.predict import RuntimeModel
from slaq.quality import LossHistory, NonFiniteLoss
from slaq.traces import TraceRow
from slaq.workload import JobSpec

PENDING, RUNNING, FINISHED, FAILED = "pending", "running", "finished", "failed"


@dataclass
class JobState:
    """Mutable state of one job during a run."""

    spec: JobSpec
    runtime: RuntimeModel
    history: LossHistory = field(default_factory=LossHistory)
    status: str = PENDING
    cores: int = 0
    max_cores: int | None = None
    started_s: float | None = None
    finished_s: float | None = None
    failure: str | None = None
    # When the job last held more than the policy floor; robust policies use the gap.
    last_served_s: float = 0.0
    rule: ConvergenceRule = field(init=False)

    def __post_init__(self) -> None:
        self.rule = ConvergenceRule(self.spec.max_iter, self.spec.tol, self.spec.patience)

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.spec.job_id

    @property
    def active(self) -> bool:
        """Arrived and neither finished nor failed."""
        return self.status == RUNNING

    def start(self, now_s: float) -> None:
        """Mark the job as arrived."""
        self.status = RUNNING
        self.started_s = now_s
        self.last_served_s = now_s

    def view(self, floor: int = 0, now_s: float | None = None) -> JobView:
        """Snapshot for a policy."""
        if self.cores > floor and now_s is not None:
            self.last_served_s = now_s
        starved = 0.0 if now_s is None else max(0.0, now_s - self.last_served_s)
        return JobView(
            job_id=self.spec.job_id,
            arrival_s=self.spec.arrival_s,
            algorithm=self.spec.algorithm,
            history=self.history,
            runtime=self.runtime,
            current_cores=self.cores,
            max_cores=self.max_cores,
            starved_s=starved,
        )

    def record(
        self,
        *,
        run_id: str,
        policy: str,
        loss: float,
        t_start_s: float,
        t_end_s: float,
        cores: int,
        cpu_s: float,
    ) -> TraceRow | None:
        """Add one completed iteration; returns its trace row, or None if the loss is bad.

        A NaN or infinite loss marks the job failed (the run goes on without it).
        """
        try:
            self.history.append(loss)
        except NonFiniteLoss as exc:
            self.fail(f"{exc}", t_end_s)
            return None
        seconds = cpu_s if cpu_s > 0 else (t_end_s - t_start_s) * cores
        # The runtime model predicts wall time at n cores; CPU time spread over n tasks gives it
        # without the noise of other jobs sharing an oversubscribed machine.
        self.runtime.observe(cores, seconds / max(cores, 1))
        norm = self.history.normalized_changes()[-1]
        row = TraceRow(
            run_id=run_id,
            policy=policy,
            job_id=self.spec.job_id,
            algorithm=self.spec.algorithm,
            dataset=self.spec.dataset,
            arrival_s=self.spec.arrival_s,
            iteration=len(self.history),
            t_start_s=t_start_s,
            t_end_s=t_end_s,
            cores=cores,
            cpu_s=cpu_s,
            loss=float(loss),
            normalized_loss=float(norm),
        )
        if self.rule.update(float(loss)):
            self.finish(t_end_s)
        return row

    def finish(self, now_s: float) -> None:
        """Mark the job as done."""
        self.status = FINISHED
        self.finished_s = now_s
        self.cores = 0

    def fail(self, reason: str, now_s: float) -> None:
        """Mark the job as failed with a reason."""
        self.status = FAILED
        self.failure = reason
        self.finished_s = now_s if math.isfinite(now_s) else None
        self.cores = 0
