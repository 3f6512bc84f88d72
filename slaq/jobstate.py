"""Per-job bookkeeping shared by the live engine and the simulator.

Both drivers keep one :class:`JobState` per job and feed it completed iterations; the decision
loop (:mod:`slaq.loop`) turns it into the deep-frozen :class:`~slaq.policy.JobView` a policy
sees, so a policy sees exactly the same kind of state live and in simulation. Every iteration
feeds the runtime model its wall time (Spark's fixed cost inside it), in both drivers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from slaq.algorithms.base import ConvergenceRule
from slaq.policy import JobView, RuntimeFit, frozen_array
from slaq.predict import LossModel, RuntimeModel
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
    # Frozen copies, rebuilt only when the history or the observations grew.
    _losses: np.ndarray = field(init=False, repr=False)
    _runtime: tuple[int, RuntimeFit] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.rule = ConvergenceRule(self.spec.max_iter, self.spec.tol, self.spec.patience)
        self._losses = frozen_array(())

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

    def frozen_losses(self) -> np.ndarray:
        """Read-only copy of the losses so far (copied once per new iteration)."""
        if self._losses.size != len(self.history):
            self._losses = frozen_array(self.history.losses)
        return self._losses

    def frozen_runtime(self) -> RuntimeFit:
        """The runtime model's current fit, frozen (rebuilt once per new observation)."""
        count = len(self.runtime.observations)
        if self._runtime is None or self._runtime[0] != count:
            work, overhead = self.runtime.coefficients
            recent = tuple(self.runtime.observations[-50:])
            self._runtime = (count, RuntimeFit(work, overhead, recent))
        return self._runtime[1]

    def view(self, model: LossModel | None, now_s: float) -> JobView:
        """Deep-frozen snapshot for a policy (no side effects)."""
        return JobView(
            job_id=self.spec.job_id,
            arrival_s=self.spec.arrival_s,
            algorithm=self.spec.algorithm,
            losses=self.frozen_losses(),
            runtime=self.frozen_runtime(),
            loss_model=model,
            max_drop=self.history.max_drop,
            current_cores=self.cores,
            max_cores=self.max_cores,
            starved_s=max(0.0, now_s - self.last_served_s),
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
        # The runtime model predicts an iteration's wall time at n cores, fixed cost included:
        # both drivers feed it the same observation (docs/design.md §2, one loop).
        self.runtime.observe(cores, t_end_s - t_start_s)
        norm = self.history.last_normalized_change()
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
