"""The Spark :class:`~slaq.algorithms.base.TrainContext`: one Spark job per ``map_reduce``.

A job's data is a list of *items* ``(block_id, start, stop)``: row windows of memory-mapped
blocks of a shared block set (docs/design.md §7). Tasks carry only items and load the rows with
:func:`slaq.blocks.load_block`; every task returns its partial sum together with the CPU time it
spent, which is what the per-epoch CPU budget is charged. The scheduling side (allocation,
budget, abort) lives in :class:`JobGate`, shared with the engine's scheduler loop.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slaq.algorithms.base import StopTraining
from slaq.blocks import add_partials, load_block
from slaq.spark.params import ParamsFile

if TYPE_CHECKING:  # driver-only imports (pandas, pyarrow) stay out of the Python workers
    from slaq.jobstate import JobState
    from slaq.traces import TraceRow

# Same value as slaq.jobstate.RUNNING, which the workers need not import.
RUNNING = "running"

Item = tuple[int, int, int]
"""``(block_id, start_row, stop_row)``: the rows of one block a job trains on."""


class RunAborted(Exception):
    """The run is being torn down; job threads unwind without marking their job failed."""


def run_partition(
    fn: Callable[[Any, Any, Any], tuple], params: Any, directory: str, items: Iterable[Item]
) -> Iterator[tuple[Any, float, float, float, int, float, float]]:
    """Task body: sum ``fn`` over the partition's items.

    Yields one ``(sum, cpu_s, t0, t1, pid, data_s, compute_s)``: the CPU seconds the task spent,
    its wall start and end (``time.time()``, comparable with the driver's on one machine), and
    the wall seconds it spent mapping blocks and computing (the iteration's breakdown).
    It consumes its whole iterator: a partition function that stops early makes PySpark fork a
    new Python worker for every task (docs/design.md §7).
    """
    wall0 = time.time()
    cpu0 = time.process_time()
    acc = None
    data_s = compute_s = 0.0
    if isinstance(params, ParamsFile):  # a live job's tasks read its parameters from a file
        t_a = time.perf_counter()
        params = params.load()
        data_s = time.perf_counter() - t_a
    for block_id, start, stop in items:
        t_a = time.perf_counter()
        X, y = load_block(directory, block_id)
        if start != 0 or stop != X.shape[0]:
            X, y = X[start:stop], y[start:stop]
        t_b = time.perf_counter()
        acc = add_partials(acc, fn(params, X, y))
        data_s += t_b - t_a
        compute_s += time.perf_counter() - t_b
    yield acc, time.process_time() - cpu0, wall0, time.time(), os.getpid(), data_s, compute_s


def warm_partition(directories: Sequence[str], items: Iterable[int]) -> Iterator[int]:
    """Warm-up task: import the numeric stack and map the first block of every block set."""
    for _ in items:
        pass
    for directory in directories:
        load_block(directory, 0)
    yield os.getpid()


@dataclass
class JobGate:
    """What a job thread may do now: its cores, its CPU budget, and whether the run goes on.

    All fields are guarded by ``cond`` (one condition shared by every job of a run), so the
    scheduler can publish a new allocation to every job at once and wake them.
    """

    cond: threading.Condition
    cores: int = 0
    native: bool = False  # Spark-native FAIR: all blocks as tasks, no budget, no waiting
    budgeted: bool = True
    balance_s: float = 0.0
    aborted: Callable[[], bool] = field(default=lambda: False)
    # What one epoch grants this job (cores x epoch x physical/slots CPU s), set with its cores.
    grant_s: float = 0.0
    in_flight: bool = False  # a Spark job of this gate's job is running
    peers: Sequence[JobGate] = ()  # the gates of every active job (this one included)
    work_conserving: bool = True  # False: budgets refill at ticks only (for A/B benchmarks)

    def ready(self) -> bool:
        """True when the job may start an iteration (call with ``cond`` held)."""
        if self.native:
            return True
        return self.cores > 0 and (not self.budgeted or self.balance_s > 0)

    def refill_if_idle(self) -> bool:
        """Start the next budget round early if no job can run: True if it did (``cond`` held).

        The budget divides a contended machine; it must not idle one. When every job holding
        cores is out of budget and none has a Spark job running, each gets another epoch's
        grant now instead of at the next tick: debts carry over, so shares stay proportional
        to cores, but the CPUs never wait for the clock (measured in benchmarks/scaling.py).
        """
        if not (self.budgeted and self.work_conserving) or self.cores <= 0 or self.balance_s > 0:
            return False
        holders = [g for g in self.peers if g.cores > 0 and not g.native]
        if self not in holders or any(g.in_flight or g.ready() for g in holders):
            return False
        if not any(g.grant_s > 0 for g in holders):
            return False
        for gate in holders:
            if gate.budgeted:
                gate.balance_s += gate.grant_s
        self.cond.notify_all()
        return True


@dataclass
class IterationStats:
    """Timing of one Spark job (one ``map_reduce``)."""

    t_start_s: float
    t_end_s: float
    tasks: int
    cores: int
    cpu_s: float
    wait_s: float


@dataclass(frozen=True)
class IterationTiming:
    """Where one Spark job's wall time went, along its critical path (``time.time()`` seconds).

    The critical path is the task that finished last: the job's submission (driver-side pickling
    and Py4J calls building the RDD), scheduling and start of that task, its data access, its
    compute and the rest of its body, then the transfer of results back to the driver.
    """

    t_request: float  # the job thread asked Spark for the job (after any budget wait)
    t_submitted: float  # the RDD was built: closure pickled, Java RDD created
    t_done: float  # collect() returned every result
    tasks: int
    pids: int  # distinct Python workers that ran the tasks
    submit_s: float
    launch_s: float  # submitted -> start of the critical task (scheduling, task start)
    first_launch_s: float  # submitted -> start of the first task
    data_s: float
    compute_s: float
    task_other_s: float
    result_s: float  # end of the critical task -> results on the driver
    cpu_s: float  # CPU seconds of all tasks (process_time)
    task_cpu_s: float  # CPU seconds of the critical task


def iteration_timing(
    t_request: float, t_submitted: float, t_done: float, results: Sequence[tuple]
) -> IterationTiming:
    """Critical-path breakdown of one job from its tasks' ``run_partition`` results."""
    last = max(results, key=lambda r: r[3])
    _, cpu_s, start, end, _, data_s, compute_s = last
    return IterationTiming(
        t_request=t_request,
        t_submitted=t_submitted,
        t_done=t_done,
        tasks=len(results),
        pids=len({r[4] for r in results}),
        submit_s=t_submitted - t_request,
        launch_s=start - t_submitted,
        first_launch_s=min(r[2] for r in results) - t_submitted,
        data_s=data_s,
        compute_s=compute_s,
        task_other_s=(end - start) - data_s - compute_s,
        result_s=t_done - end,
        cpu_s=sum(r[1] for r in results),
        task_cpu_s=cpu_s,
    )


class SparkTrainContext:
    """Runs a trainer's ``map_reduce`` calls as Spark jobs with exactly ``cores`` tasks."""

    def __init__(
        self,
        *,
        sc: Any,
        state: JobState,
        gate: JobGate,
        items: Sequence[Item],
        directory: str,
        params_file: str,
        run_id: str,
        policy: str,
        clock: Callable[[], float],
        trace: list[TraceRow],
        on_change: Callable[[], None],
        on_loss: Callable[[JobState], None] | None = None,
    ) -> None:
        self.sc = sc
        self.state = state
        self.gate = gate
        self.items = list(items)
        self.directory = directory
        self.params = ParamsFile(params_file)
        self.run_id = run_id
        self.policy = policy
        self.clock = clock
        self.trace = trace
        self.on_change = on_change
        self.on_loss = on_loss
        self.n_blocks = len(self.items)
        self.n_rows = sum(stop - start for _, start, stop in self.items)
        self.cpu_s_total = 0.0
        self.wait_s_total = 0.0
        self.spark_jobs = 0
        self._pending: IterationStats | None = None
        # One record per Spark job, for the scaling benchmark's breakdown (a few floats each).
        self.timings: list[IterationTiming] = []
        self._full_rdds: dict[int, Any] = {}  # the job's items as an RDD, per task count
        self._job_rdds: dict[tuple[Any, int], Any] = {}  # full-data task RDDs, per (fn, tasks)

    def _items_rdd(self, selected: Sequence[Item], tasks: int, full: bool) -> Any:
        """The items as an RDD of ``tasks`` partitions; built once per task count for all items.

        A full-data iteration reuses the parallelized item list: sc.parallelize writes it to a
        file for the JVM and costs several Py4J calls per iteration (measured 10-40 ms of a
        100-450 ms bare job on this machine, benchmarks/scaling.py). Mini-batches vary.
        """
        if not full:
            return self.sc.parallelize(selected, tasks)
        rdd = self._full_rdds.get(tasks)
        if rdd is None:
            rdd = self._full_rdds[tasks] = self.sc.parallelize(selected, tasks)
        return rdd

    def _task_rdd(self, fn: Callable, selected: Sequence[Item], tasks: int, full: bool) -> Any:
        """The RDD whose ``collect()`` runs ``fn`` over the items with the current parameters.

        The tasks read the parameters from the job's file (slaq.spark.params), so a full-data
        RDD is built once per function and task count and every later iteration reuses it.
        """
        rdd = self._job_rdds.get((fn, tasks)) if full else None
        if rdd is None:
            task = functools.partial(run_partition, fn, self.params, self.directory)
            rdd = self._items_rdd(selected, tasks, full).mapPartitions(task)
            rdd._jrdd  # noqa: B018 - builds the Java RDD (pickles the closure) now, timed
            if full:
                self._job_rdds[(fn, tasks)] = rdd
        return rdd

    # --------------------------------------------------------------- TrainContext protocol

    def _select(self, blocks: Sequence[int] | None) -> list[Item]:
        """The items of the listed job-local blocks (all of them if None)."""
        if blocks is None:
            return self.items
        bad = [b for b in blocks if not 0 <= int(b) < self.n_blocks]
        if bad:
            raise IndexError(f"blocks {bad[:5]} outside this job's 0..{self.n_blocks - 1}")
        if not blocks:
            raise ValueError("map_reduce over no blocks")
        return [self.items[int(b)] for b in blocks]

    def _acquire(self) -> tuple[int, bool]:
        """Wait until the job may run a Spark job; its cores and whether FAIR is native.

        An iteration keeps the cores it started with (docs/design.md §2, as in the
        simulator): only its first Spark job waits for the gate; line-search trials and other
        calls before the report run at once on the same task count.
        """
        with self.gate.cond:
            running = self._pending
            while running is None:
                if self.gate.aborted():
                    raise RunAborted()
                if self.state.status != RUNNING:
                    raise StopTraining(self.state.status)
                if self.gate.ready():
                    break
                if self.gate.refill_if_idle():
                    continue
                self.gate.cond.wait()
            if self.gate.aborted():
                raise RunAborted()
            self.gate.in_flight = True
            return (self.gate.cores if running is None else running.cores), self.gate.native

    def map_reduce(
        self, fn: Callable[[Any, Any, Any], tuple], params: Any, blocks: Sequence[int] | None = None
    ) -> tuple:
        """Apply ``fn`` to the listed job-local blocks (all if None) as one Spark job; sum."""
        selected = self._select(blocks)
        waited0 = time.monotonic()
        cores, native = self._acquire()
        wait_s = time.monotonic() - waited0
        tasks = len(selected) if native else min(cores, len(selected))
        iteration = len(self.state.history) + 1
        try:
            self.sc.setLocalProperty(
                "spark.job.description", f"{self.state.job_id} iteration {iteration}"
            )
            t0 = self.clock()
            t_request = time.time()
            self.params.write(params)
            rdd = self._task_rdd(fn, selected, tasks, full=blocks is None)
            t_submitted = time.time()
            results = rdd.collect()
        finally:
            with self.gate.cond:
                self.gate.in_flight = False
        t_done = time.time()
        t1 = self.clock()
        self.timings.append(iteration_timing(t_request, t_submitted, t_done, results))
        self.spark_jobs += 1
        acc = None
        cpu = 0.0
        for part, cpu_s, *_ in results:
            cpu += cpu_s
            if part is not None:
                acc = add_partials(acc, part)
        with self.gate.cond:
            if self.gate.budgeted and not native:
                self.gate.balance_s -= cpu
            # Jobs out of budget re-check whether the machine went idle (refill_if_idle).
            self.gate.cond.notify_all()
        self.cpu_s_total += cpu
        self.wait_s_total += wait_s
        # An iteration may take several map_reduce calls (setup, line-search trials): it
        # starts with the first one since the last report and is charged all of their CPU.
        prev = self._pending
        if prev is None:
            # The iteration's cores: its allocation (a one-block setup call runs one task but
            # the iteration holds, and its later calls use, what the job was given).
            self._pending = IterationStats(t0, t1, tasks, cores, cpu, wait_s)
        else:
            prev.t_end_s, prev.cpu_s, prev.wait_s = t1, prev.cpu_s + cpu, prev.wait_s + wait_s
        if acc is None:
            raise ValueError("map_reduce produced no partial results")
        return acc

    def report(self, objective: float) -> None:
        """Record one completed iteration; raise StopTraining once the job is done."""
        stats = self._pending
        if stats is None:
            raise RuntimeError("report() without a preceding map_reduce()")
        self._pending = None
        t_end = self.clock()
        with self.gate.cond:
            if self.state.status == RUNNING:
                row = self.state.record(
                    run_id=self.run_id,
                    policy=self.policy,
                    loss=float(objective) if _is_number(objective) else math.nan,
                    t_start_s=stats.t_start_s,
                    t_end_s=t_end,
                    cores=stats.cores,
                    cpu_s=stats.cpu_s,
                )
                if row is not None:
                    self.trace.append(row)
            status = self.state.status
        if status != RUNNING:
            self.on_change()
            raise StopTraining(status)
        if self.on_loss is not None:
            # Outside the shared lock: a curve fit takes milliseconds (ModelBook.fit_reported).
            self.on_loss(self.state)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
