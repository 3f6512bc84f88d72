"""The live driver of the decision loop: wall clock, job threads, gates and CPU budgets.

:func:`slaq.loop.run_loop` calls it exactly as it calls the simulator's driver. Each job runs
in its own thread and FAIR pool; its next iteration runs as one Spark job with exactly the
cores the last decision gave it (:class:`~slaq.spark.context.JobGate`). A per-epoch CPU-time
budget (the prototype's tokens, docs/design.md §7) makes those cores a real share of an
oversubscribed machine. A policy declaring ``native_fair`` instead runs every iteration over
all of the job's blocks and lets Spark's FAIR pools share the slots.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from slaq.algorithms.base import StopTraining
from slaq.jobstate import RUNNING, JobState
from slaq.policy import Decision
from slaq.spark.cluster import alive_cores, master_status
from slaq.spark.context import Item, JobGate, RunAborted, SparkTrainContext
from slaq.spark.data import JobData, TrainerFactory, n_outputs_for, trainer_params
from slaq.spark.session import LiveRunError, SparkSession
from slaq.traces import TraceRow
from slaq.workload import JobSpec

log = logging.getLogger(__name__)


@dataclass
class LiveJob:
    """One job of a live run: its state, gate, data window and thread."""

    spec: JobSpec
    state: JobState
    gate: JobGate
    data: JobData
    items: list[Item]
    thread: threading.Thread | None = None
    ctx: SparkTrainContext | None = None


@dataclass
class LiveDriver:
    """Wall clock and Spark executor for :func:`slaq.loop.run_loop`."""

    jobs: Mapping[str, LiveJob]
    spark: SparkSession
    cond: threading.Condition
    epoch_s: float
    total_cores: int
    run_id: str
    policy_name: str
    trainer_factory: TrainerFactory
    physical_cores: int | None = None
    webui_url: str | None = None
    max_time_s: float | None = None
    lost_capacity_timeout_s: float | None = None
    # Where each job's tasks read its current parameters (slaq.spark.params); executors see it.
    params_dir: str | None = None
    # Called on a job's thread after each loss it reports (the loop's ModelBook.fit_reported).
    on_loss: Callable[[JobState], None] | None = None
    trace: list[TraceRow] = field(default_factory=list)
    capacity_log: list[tuple[float, int]] = field(default_factory=list)
    aborted: bool = False
    _dirty: bool = False
    _t0: float = field(default_factory=time.monotonic)
    _lost_since: float | None = None

    def __post_init__(self) -> None:
        self.capacity_log.append((0.0, self.total_cores))

    # ------------------------------------------------------------------ loop protocol

    def now(self) -> float:
        """Wall seconds since the run's clock started."""
        return time.monotonic() - self._t0

    def lock(self) -> threading.Condition:
        """The condition every job thread and the loop share."""
        return self.cond

    def capacity(self, now: float) -> int:
        """Cores the cluster offers now; raises LiveRunError when the run cannot go on."""
        if self.spark.sc._jsc.sc().isStopped():
            raise LiveRunError("the SparkContext stopped during the run")
        if self.max_time_s is not None and now > self.max_time_s:
            raise LiveRunError(
                f"run under policy {self.policy_name!r} did not finish within "
                f"{self.max_time_s:.0f}s"
            )
        self.total_cores = self._check_capacity(now)
        return self.total_cores

    def start_job(self, state: JobState, now: float) -> None:
        """Start the job's thread (lock held)."""
        from pyspark import InheritableThread

        job = self.jobs[state.job_id]
        # InheritableThread pins a JVM thread to the Python thread, so the job's FAIR pool
        # (a thread-local property) applies to the Spark jobs it submits.
        job.thread = InheritableThread(
            target=self._job_main, args=(job,), name=f"slaq-{state.job_id}"
        )
        job.thread.daemon = True
        job.thread.start()

    def apply(self, decision: Decision, active: Sequence[JobState], tick: bool, now: float) -> None:
        """Publish cores and CPU budgets to the job gates and wake the job threads."""
        next_tick = self.epoch_s * (math.floor(now / self.epoch_s + 1e-9) + 1)
        factor = (self.physical_cores or self.total_cores) / max(self.total_cores, 1)
        gates = [self.jobs[s.job_id].gate for s in active]
        for state in active:
            gate = self.jobs[state.job_id].gate
            new, old = state.cores, gate.cores
            gate.cores = new
            gate.peers = gates  # for JobGate.refill_if_idle (work-conserving budget)
            if gate.budgeted:
                gate.grant_s = new * self.epoch_s * factor
                if tick:
                    # Unspent budget lapses at the tick; overspending is carried as debt so a
                    # long iteration cannot take more than its share over time.
                    gate.balance_s = min(gate.balance_s, 0.0) + new * self.epoch_s * factor
                else:
                    gate.balance_s += (new - old) * max(next_tick - now, 0.0) * factor
        self.cond.notify_all()

    def take_events(self) -> bool:
        """Whether a job ended since the last call (lock held)."""
        dirty, self._dirty = self._dirty, False
        return dirty

    def wait(self, until: float, stop_on_event: bool) -> None:
        """Sleep on the shared condition until ``until`` or a job's end."""
        with self.cond:
            self.cond.wait_for(lambda: self._dirty, timeout=max(until - self.now(), 0.0))

    # ------------------------------------------------------------------ job threads

    def is_aborted(self) -> bool:
        """Whether the run is being torn down."""
        return self.aborted

    def mark_dirty(self) -> None:
        """A job ended: wake the loop so it can re-plan."""
        with self.cond:
            self._dirty = True
            self.cond.notify_all()

    def _job_main(self, job: LiveJob) -> None:
        sc = self.spark.sc
        try:
            if self.params_dir is None:
                raise ValueError("LiveDriver.params_dir is not set: tasks could not read params")
            sc.setLocalProperty("spark.scheduler.pool", job.spec.job_id)
            job.ctx = SparkTrainContext(
                sc=sc,
                state=job.state,
                gate=job.gate,
                items=job.items,
                directory=str(job.data.blockset.directory),
                # By position: job ids need not be valid file names.
                params_file=f"{self.params_dir}/job-{list(self.jobs).index(job.spec.job_id)}.pkl",
                run_id=self.run_id,
                policy=self.policy_name,
                clock=self.now,
                trace=self.trace,
                on_change=self.mark_dirty,
                on_loss=self.on_loss,
            )
            trainer = self.trainer_factory(
                job.spec,
                job.data.n_features,
                n_outputs_for(job.spec, job.data),
                trainer_params(job.spec),
            )
            trainer.run(job.ctx)
        except (StopTraining, RunAborted):
            pass
        except BaseException as exc:  # a job's failure must not end the run
            if not self.aborted:
                reason = summarize_exception(exc)
                log.warning("job %s failed: %s", job.spec.job_id, reason)
                with self.cond:
                    if job.state.status == RUNNING:
                        job.state.fail(reason, self.now())
        finally:
            with self.cond:
                if job.state.status == RUNNING and not self.aborted:
                    job.state.finish(self.now())  # the trainer stopped on its own
                job.gate.cores = 0
                self._dirty = True
                self.cond.notify_all()

    def join(self) -> None:
        """Wait for every started job thread."""
        for job in self.jobs.values():
            if job.thread is not None:
                job.thread.join()

    def abort(self, grace_s: float = 30.0) -> None:
        """Stop every running job: flag, cancel Spark's jobs, join the threads."""
        running = [j for j in self.jobs.values() if j.thread is not None and j.thread.is_alive()]
        if not running:
            return
        with self.cond:
            self.aborted = True
            self.cond.notify_all()
        with contextlib.suppress(Exception):
            self.spark.sc.cancelAllJobs()
        deadline = time.monotonic() + grace_s
        for job in running:
            assert job.thread is not None
            job.thread.join(timeout=max(deadline - time.monotonic(), 0.1))

    # ------------------------------------------------------------------ capacity

    def _read_capacity(self) -> int | None:
        if not self.webui_url:
            return None
        status = master_status(self.webui_url, timeout_s=2.0)
        for app in status.get("activeapps", []):
            if app.get("id") == self.spark.app_id:
                return min(int(app.get("cores", 0)), alive_cores(status))
        return alive_cores(status)

    def _check_capacity(self, now: float) -> int:
        """Re-read the master's capacity; give up after the lost-capacity timeout."""
        timeout = self.lost_capacity_timeout_s or max(60.0, 10 * self.epoch_s)
        try:
            cap = self._read_capacity()
        except Exception as exc:  # the master may be briefly unreachable
            log.warning("cannot read cluster capacity: %s", exc)
            if self._lost_since is None:
                self._lost_since = now
                return self.total_cores
            cap = 0
        if cap is None:
            self._lost_since = None
            return self.total_cores
        if cap != self.total_cores:
            log.warning(
                "cluster capacity changed from %d to %d cores at t=%.1fs",
                self.total_cores,
                cap,
                now,
            )
            self.capacity_log.append((now, cap))
        if cap > 0:
            self._lost_since = None
            return cap
        self._lost_since = now if self._lost_since is None else self._lost_since
        if now - self._lost_since > timeout:
            raise LiveRunError(
                f"no Spark executor cores for {now - self._lost_since:.0f}s (all workers lost?); "
                "the run cannot finish"
            )
        return 0


def summarize_exception(exc: BaseException) -> str:
    """One readable line for run.json: the Python error inside a Py4J/Spark error if any."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    pattern = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit)):\s*(.*)$")
    python_errors = [ln for ln in lines if pattern.match(ln) and not ln.startswith("org.")]
    if type(exc).__name__ in ("Py4JJavaError", "Py4JError") and python_errors:
        return f"{type(exc).__name__}: {python_errors[-1]}"[:1000]
    first = lines[0] if lines else ""
    return f"{type(exc).__name__}: {first}"[:1000]
