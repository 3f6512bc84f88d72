"""Run a workload live on Spark under a policy, enforce its allocations, write a trace.

One SparkContext (FAIR scheduler), one thread and one FAIR pool per job. The calling thread is
the scheduler: at every epoch tick (and when a job arrives or ends) it asks the policy for
cores, publishes them, and each job's next iteration then runs as one Spark job with exactly
``a_j`` tasks over the job's memory-mapped blocks. A per-epoch CPU-time budget (the prototype's
tokens, docs/design.md §7) makes ``a_j`` a real share of an oversubscribed machine. A policy whose
class has ``native_fair = True`` (``spark-fair``) instead runs every iteration over all of the
job's blocks as tasks and lets Spark's own FAIR scheduler share the slots.

Outputs (:mod:`slaq.traces`) go to a temporary sibling of ``out_dir`` that is renamed into place
only when the run completes: an interrupted or failed run leaves nothing that looks whole.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import os
import re
import shutil
import sys
import threading
import time
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from slaq.algorithms.base import StopTraining
from slaq.blocks import BlockSet, BlockSetError, open_blockset, write_blocks
from slaq.jobstate import FAILED, FINISHED, PENDING, RUNNING, JobState
from slaq.policy import ClusterView, Policy, PolicyError, validate_allocation
from slaq.predict import RuntimeModel
from slaq.spark.cluster import (
    LOOPBACK,
    alive_cores,
    free_port,
    is_loopback_master,
    master_status,
    signals_as_exceptions,
    stop_pids,
)
from slaq.spark.context import (
    Item,
    JobGate,
    RunAborted,
    SparkTrainContext,
    warm_partition,
)
from slaq.traces import (
    AllocationRow,
    TraceRow,
    environment_versions,
    write_run,
    write_table_atomic,
)
from slaq.workload import JobSpec, Workload

log = logging.getLogger(__name__)
# py4j logs every closed connection at INFO.
logging.getLogger("py4j").setLevel(logging.WARNING)

# Keys of a job's ``params`` that the engine consumes (the rest go to the trainer).
ENGINE_PARAMS = ("rows",)
MIN_BLOCKS = 48
# Task names of slaq.datasets whose labels are class indices.
CLASSIFICATION_TASKS = ("classification", "binary", "multiclass")
BLOCKS_PER_CORE = 4
TASK_LOG_FILE = "spark_tasks.parquet"
# Executor-side Python must not multi-thread BLAS: a task is meant to use one slot.
SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

TASK_LOG_SCHEMA = pa.schema(
    [
        ("job_id", pa.string()),
        ("stage_id", pa.int64()),
        ("stage_attempt", pa.int64()),
        ("description", pa.string()),
        ("task_id", pa.int64()),
        ("executor_id", pa.string()),
        ("status", pa.string()),
        ("launch_s", pa.float64()),
        ("duration_s", pa.float64()),
    ]
)


class LiveRunError(RuntimeError):
    """The live run could not finish (lost cluster, SparkContext died, time limit)."""


@dataclass(frozen=True)
class JobData:
    """A dataset as written to blocks for one run."""

    dataset: str
    task: str
    blockset: BlockSet
    n_classes: int | None

    @property
    def n_features(self) -> int:
        """Columns of X."""
        return self.blockset.n_features


TrainerFactory = Callable[[JobSpec, int, int, Mapping[str, Any]], Any]
"""``factory(spec, n_features, n_outputs, trainer_params) -> Trainer``."""


def default_trainer_factory(
    spec: JobSpec, n_features: int, n_outputs: int, params: Mapping[str, Any]
) -> Any:
    """Trainer from the algorithm registry, seeded with the job's seed."""
    from slaq.algorithms import make_trainer

    return make_trainer(spec.algorithm, n_features, n_outputs, params, spec.seed)


def trainer_params(spec: JobSpec) -> dict[str, Any]:
    """The job's parameters without the ones the engine consumes (``rows``)."""
    return {k: v for k, v in spec.params.items() if k not in ENGINE_PARAMS}


def n_outputs_for(spec: JobSpec, data: JobData) -> int:
    """Classes for classifiers, ``k`` for k-means/GMM, 1 for regression."""
    if spec.algorithm in ("kmeans", "gmm"):
        if "k" not in spec.params:
            raise ValueError(f"job {spec.job_id!r}: {spec.algorithm} needs params.k")
        return int(spec.params["k"])
    if spec.algorithm == "linreg":
        return 1
    if data.n_classes is None:
        raise ValueError(
            f"job {spec.job_id!r}: {spec.algorithm} needs class labels but dataset "
            f"{data.dataset!r} is a {data.task} data set"
        )
    return data.n_classes


def job_items(blockset: BlockSet, rows: int | None, seed: Sequence[int]) -> list[Item]:
    """The row windows a job trains on: all rows, or a seeded ``rows``-row sub-sample.

    A sub-sample takes a contiguous window at a seeded offset from every block, in proportion
    to the block's size, so the job keeps all blocks (full parallelism, even tasks) and the
    windows are slices of the memory map (no copy). Rows were shuffled when the blocks were
    written, so a window is a random sample.
    """
    sizes = np.asarray(blockset.rows_per_block, dtype=np.int64)
    if rows is None or int(rows) >= blockset.n_rows:
        return [(i, 0, int(s)) for i, s in enumerate(sizes)]
    rows = int(rows)
    if rows < 1:
        raise ValueError(f"params.rows must be >= 1, got {rows}")
    rng = np.random.default_rng(list(seed))
    if rows < blockset.n_blocks:
        take = np.zeros(blockset.n_blocks, dtype=np.int64)
        take[rng.choice(blockset.n_blocks, size=rows, replace=False)] = 1
    else:
        quota = rows * sizes / sizes.sum()
        take = np.floor(quota).astype(np.int64)
        extra = rows - int(take.sum())
        take[np.argsort(-(quota - take), kind="stable")[:extra]] += 1
        take = np.minimum(take, sizes)
    items = []
    for i, (size, n) in enumerate(zip(sizes, take, strict=True)):
        if n > 0:
            start = int(rng.integers(0, size - n + 1))
            items.append((i, start, start + int(n)))
    return items


def _fingerprint(X: Any, y: Any) -> str:
    """Cheap content hash (shape, dtype and a strided row sample) naming cached blocks."""
    h = hashlib.blake2b(digest_size=8)
    h.update(repr((X.shape, str(X.dtype), np.asarray(y).shape)).encode())
    step = max(1, X.shape[0] // 256)
    sample = X[::step]
    sample = sample.toarray() if hasattr(sample, "toarray") else np.asarray(sample)
    h.update(np.ascontiguousarray(sample).tobytes())
    h.update(np.ascontiguousarray(np.asarray(y)[::step]).tobytes())
    return h.hexdigest()


def prepare_dataset(name: str, dataset: Any, root: Path, n_blocks: int, seed: int) -> JobData:
    """Write ``dataset`` (``.X``, ``.y``, ``.task``) once as shuffled memory-mapped blocks.

    Block sets are named by dataset, size, block count, seed and a content fingerprint, so a
    shared cache directory is reused safely across runs.
    """
    X, y = dataset.X, dataset.y
    n_rows = int(X.shape[0])
    nb = max(1, min(n_blocks, n_rows))
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    directory = root / f"{safe}-{n_rows}x{X.shape[1]}-b{nb}-s{seed}-{_fingerprint(X, y)}"
    task = str(getattr(dataset, "task", "classification"))
    labels = np.asarray(y) if y is not None else None
    n_classes = None
    if task in CLASSIFICATION_TASKS and labels is not None:
        n_classes = int(max(np.unique(labels).size, int(labels.max()) + 1))
    try:
        blockset = open_blockset(directory)
        log.info("reusing blocks of %s in %s", name, directory)
    except BlockSetError:
        perm = np.random.default_rng(seed).permutation(n_rows)
        log.info("writing %s (%d x %d) as %d blocks to %s", name, n_rows, X.shape[1], nb, directory)
        try:
            blockset = write_blocks(X[perm], None if y is None else labels[perm], directory, nb)
        except FileExistsError:  # a concurrent run wrote the same block set first
            blockset = open_blockset(directory)
    return JobData(dataset=name, task=task, blockset=blockset, n_classes=n_classes)


def default_dataset_loader(data_dir: Path | None, seed: int) -> Callable[[str], Any]:
    """Loader of named data sets through :func:`slaq.datasets.load_dataset`."""

    def load(name: str) -> Any:
        from slaq.datasets import load_dataset

        return load_dataset(name, cache_dir=data_dir, seed=seed)

    return load


def _summarize_exception(exc: BaseException) -> str:
    """One readable line for run.json: the Python error inside a Py4J/Spark error if any."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    pattern = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit)):\s*(.*)$")
    python_errors = [ln for ln in lines if pattern.match(ln) and not ln.startswith("org.")]
    if type(exc).__name__ in ("Py4JJavaError", "Py4JError") and python_errors:
        return f"{type(exc).__name__}: {python_errors[-1]}"[:1000]
    first = lines[0] if lines else ""
    return f"{type(exc).__name__}: {first}"[:1000]


@dataclass
class _Job:
    spec: JobSpec
    state: JobState
    gate: JobGate
    data: JobData
    items: list[Item]
    thread: threading.Thread | None = None
    ctx: SparkTrainContext | None = None


@dataclass
class EpochInfo:
    """What the scheduler decided at one decision point (for progress and callbacks)."""

    epoch: int
    t_s: float
    total_cores: int
    allocation: dict[str, int]
    active: int
    finished: int
    iterations: int
    decision_ms: float


@dataclass
class _Spark:
    sc: Any
    app_id: str
    ui_url: str | None
    owned: bool
    startup_s: float = 0.0


@dataclass
class LiveRun:
    """One live run; :func:`run_live` is the convenient entry point."""

    workload: Workload
    policy: Policy
    master_url: str
    total_cores: int
    epoch_s: float
    seed: int
    out_dir: Path
    data_dir: Path | None = None
    progress: bool = True
    cpu_budget: bool = True
    physical_cores: int | None = None
    executor_memory: str = "2g"
    webui_url: str | None = None
    n_blocks: int | None = None
    max_time_s: float | None = None
    lost_capacity_timeout_s: float | None = None
    replan_on_events: bool = True
    task_log: bool = False
    config: Mapping[str, Any] | None = None
    dataset_loader: Callable[[str], Any] | None = None
    trainer_factory: TrainerFactory | None = None
    on_epoch: Callable[[EpochInfo], None] | None = None
    spark_context: Any | None = None
    # run state
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _aborted: bool = False
    _dirty: bool = False
    _t0: float = 0.0
    _run_id: str = ""

    # ------------------------------------------------------------------ public

    def run(self) -> Path:
        """Execute the run; returns ``out_dir`` once complete (see :func:`run_live`)."""
        if self.total_cores < 1:
            raise ValueError(f"total_cores must be >= 1, got {self.total_cores}")
        if not self.epoch_s > 0:
            raise ValueError(f"epoch_s must be > 0, got {self.epoch_s}")
        if not self.workload.jobs:
            raise ValueError(f"workload {self.workload.name!r} has no jobs")
        out_dir = Path(self.out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        tmp_dir = out_dir.parent / f".{out_dir.name}.partial-{tag}"
        scratch = out_dir.resolve().parent / f".{out_dir.name}.scratch-{tag}"
        # Absolute: executors run in their own working directories.
        blocks_root = (
            Path(self.data_dir).resolve() / "blocks" if self.data_dir else scratch / "blocks"
        )
        env_keys = ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_LOCAL_IP")
        env_backup = {k: os.environ.get(k) for k in env_keys}
        try:
            with signals_as_exceptions():
                self._run(tmp_dir, blocks_root, scratch)
            _install_dir(tmp_dir, out_dir)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)
            for key, value in env_backup.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return out_dir

    # ------------------------------------------------------------------ internals

    def _clock(self) -> float:
        return time.monotonic() - self._t0

    def _is_aborted(self) -> bool:
        return self._aborted

    def _mark_dirty(self) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def _prepare_jobs(self, blocks_root: Path) -> list[_Job]:
        loader = self.dataset_loader or default_dataset_loader(self.data_dir, self.seed)
        n_blocks = self.n_blocks or max(MIN_BLOCKS, BLOCKS_PER_CORE * self.total_cores)
        data: dict[str, JobData] = {}
        for name in sorted({spec.dataset for spec in self.workload.jobs}):
            data[name] = prepare_dataset(name, loader(name), blocks_root, n_blocks, self.seed)
        native = bool(getattr(self.policy, "native_fair", False))
        jobs = []
        for spec in self.workload.jobs:
            d = data[spec.dataset]
            rows = spec.params.get("rows")
            rows = None if rows is None else int(rows)
            items = job_items(d.blockset, rows, (self.seed, spec.seed))
            prior = _prior_work_s(spec, d, items)
            state = JobState(spec, RuntimeModel(prior_work_s=prior))
            state.max_cores = len(items)
            gate = JobGate(
                cond=self._cond,
                native=native,
                budgeted=self.cpu_budget and not native,
                aborted=self._is_aborted,
            )
            jobs.append(_Job(spec, state, gate, d, items))
        return jobs

    def _start_spark(self, directories: Sequence[str], pools: Path) -> _Spark:
        t0 = time.monotonic()
        if self.spark_context is not None:
            sc, owned = self.spark_context, False
        else:
            sc = start_spark_context(
                self.master_url,
                total_cores=self.total_cores,
                app_name=f"slaq-{self.policy.name}",
                executor_memory=self.executor_memory,
                pools_file=pools,
                task_log=self.task_log,
            )
            owned = True
        spark = _Spark(sc=sc, app_id=sc.applicationId, ui_url=sc.uiWebUrl, owned=owned)
        warm = sc.parallelize(range(self.total_cores), self.total_cores)
        # The first job pays for the Python daemons' start-up and maps the blocks.
        warm.mapPartitions(functools.partial(warm_partition, list(directories))).collect()
        spark.startup_s = time.monotonic() - t0
        log.info(
            "SparkContext %s ready with %d cores after %.1fs (UI %s)",
            spark.app_id,
            sc.defaultParallelism,
            spark.startup_s,
            spark.ui_url,
        )
        return spark

    def _read_capacity(self, spark: _Spark) -> int | None:
        if not self.webui_url:
            return None
        status = master_status(self.webui_url, timeout_s=2.0)
        for app in status.get("activeapps", []):
            if app.get("id") == spark.app_id:
                return min(int(app.get("cores", 0)), alive_cores(status))
        return alive_cores(status)

    def _job_main(self, job: _Job, spark: _Spark, trace: list[TraceRow]) -> None:
        sc = spark.sc
        try:
            sc.setLocalProperty("spark.scheduler.pool", job.spec.job_id)
            job.ctx = SparkTrainContext(
                sc=sc,
                state=job.state,
                gate=job.gate,
                items=job.items,
                directory=str(job.data.blockset.directory),
                run_id=self._run_id,
                policy=self.policy.name,
                clock=self._clock,
                trace=trace,
                on_change=self._mark_dirty,
            )
            factory = self.trainer_factory or default_trainer_factory
            trainer = factory(
                job.spec,
                job.data.n_features,
                n_outputs_for(job.spec, job.data),
                trainer_params(job.spec),
            )
            trainer.run(job.ctx)
        except (StopTraining, RunAborted):
            pass
        except BaseException as exc:  # a job's failure must not end the run
            if not self._aborted:
                reason = _summarize_exception(exc)
                log.warning("job %s failed: %s", job.spec.job_id, reason)
                with self._cond:
                    if job.state.status == RUNNING:
                        job.state.fail(reason, self._clock())
        finally:
            with self._cond:
                if job.state.status == RUNNING and not self._aborted:
                    job.state.finish(self._clock())  # the trainer stopped on its own
                job.gate.cores = 0
                self._dirty = True
                self._cond.notify_all()

    def _decide(
        self,
        jobs: Sequence[_Job],
        total: int,
        epoch: int,
        tick: bool,
        next_tick: float,
        allocations: list[AllocationRow],
        decisions: list[float],
    ) -> EpochInfo:
        """Ask the policy, validate, publish cores and budgets (call with the lock held)."""
        now = self._clock()
        active = [j for j in jobs if j.state.active]
        floor = int(getattr(self.policy, "min_cores", 0) or 0)
        views = [j.state.view(floor, now) for j in active]
        cluster = ClusterView(total_cores=total, epoch_s=self.epoch_s, now_s=now)
        t0 = time.perf_counter()
        try:
            raw = self.policy.allocate(cluster, views) if views else {}
        except PolicyError:
            raise
        except Exception as exc:
            raise PolicyError(f"policy {self.policy.name!r} failed: {exc!r}") from exc
        decision_ms = (time.perf_counter() - t0) * 1e3
        alloc = validate_allocation(self.policy.name, raw, cluster, views)
        decisions.append(decision_ms)
        gains = getattr(self.policy, "last_gains", {}) or {}
        factor = (self.physical_cores or total) / total
        for job in active:
            new, old = alloc[job.spec.job_id], job.gate.cores
            job.gate.cores = job.state.cores = new
            if job.gate.budgeted:
                if tick:
                    # Unspent budget lapses at the tick; overspending is carried as debt so a
                    # long iteration cannot take more than its share over time.
                    job.gate.balance_s = min(job.gate.balance_s, 0.0) + new * self.epoch_s * factor
                else:
                    remaining = max(next_tick - now, 0.0)
                    job.gate.balance_s += (new - old) * remaining * factor
            allocations.append(
                AllocationRow(
                    self._run_id,
                    self.policy.name,
                    epoch,
                    now,
                    job.spec.job_id,
                    new,
                    float(gains.get(job.spec.job_id, math.nan)),
                    decision_ms,
                )
            )
        self._cond.notify_all()
        return EpochInfo(
            epoch=epoch,
            t_s=now,
            total_cores=total,
            allocation={j.spec.job_id: alloc[j.spec.job_id] for j in active},
            active=len(active),
            finished=sum(j.state.status in (FINISHED, FAILED) for j in jobs),
            iterations=0,
            decision_ms=decision_ms,
        )

    def _run(self, tmp_dir: Path, blocks_root: Path, scratch: Path) -> None:
        started = time.time()
        self._run_id = f"live-{self.policy.name}-{self.seed}-{uuid.uuid4().hex[:8]}"
        if self.physical_cores is None and is_loopback_master(self.master_url):
            self.physical_cores = len(os.sched_getaffinity(0))
        jobs = self._prepare_jobs(blocks_root)
        directories = sorted({str(j.data.blockset.directory) for j in jobs})
        trace: list[TraceRow] = []
        allocations: list[AllocationRow] = []
        decisions: list[float] = []
        capacity_log: list[tuple[float, int]] = []
        spark: _Spark | None = None
        bar = _progress_bar(len(jobs), self.policy.name) if self.progress else None
        error: BaseException | None = None
        task_rows: list[dict[str, Any]] = []
        try:
            pools = _write_pools(scratch / "pools.xml", [j.spec.job_id for j in jobs])
            spark = self._start_spark(directories, pools)
            self._t0 = time.monotonic()
            total = self.total_cores
            capacity_log.append((0.0, total))
            pending = sorted(jobs, key=lambda j: (j.spec.arrival_s, j.spec.job_id))
            epoch = 0
            next_tick = 0.0
            lost_since: float | None = None
            lost_timeout = self.lost_capacity_timeout_s or max(60.0, 10 * self.epoch_s)
            last_iters, last_t = 0, 0.0
            while True:
                now = self._clock()
                tick = now >= next_tick - 1e-6
                if tick:
                    next_tick = self.epoch_s * (math.floor(now / self.epoch_s + 1e-9) + 1)
                    total, lost_since = self._check_capacity(
                        spark, total, lost_since, now, lost_timeout, capacity_log
                    )
                    if spark.sc._jsc.sc().isStopped():
                        raise LiveRunError("the SparkContext stopped during the run")
                    if self.max_time_s is not None and now > self.max_time_s:
                        raise LiveRunError(
                            f"run under policy {self.policy.name!r} did not finish within "
                            f"{self.max_time_s:.0f}s"
                        )
                info = None
                with self._cond:
                    arrived = self._start_arrivals(pending, now, spark, trace)
                    if not pending and all(j.state.status != RUNNING for j in jobs):
                        break
                    replan = tick or (self.replan_on_events and (arrived or self._dirty))
                    self._dirty = False
                    if replan and total > 0:
                        info = self._decide(
                            jobs, total, epoch, tick, next_tick, allocations, decisions
                        )
                        info.iterations = len(trace)
                        epoch += 1
                    wake = next_tick
                    if pending:
                        wake = min(wake, pending[0].spec.arrival_s)
                    self._cond.wait_for(lambda: self._dirty, timeout=max(wake - self._clock(), 0.0))
                if info is not None:
                    rate = (info.iterations - last_iters) / max(info.t_s - last_t, 1e-9)
                    last_iters, last_t = info.iterations, info.t_s
                    if bar is not None:
                        _update_bar(bar, info, rate)
                    if self.on_epoch is not None:
                        self.on_epoch(info)
            for job in jobs:
                if job.thread is not None:
                    job.thread.join()
            if self.task_log and spark.ui_url:
                task_rows = _fetch_task_log(spark.ui_url, spark.app_id, since=started)
        except BaseException as exc:
            error = exc
            raise
        finally:
            if bar is not None:
                bar.close()
            if spark is not None:
                self._abort_jobs(jobs, spark)
                if spark.owned:
                    stop_spark_context(spark.sc)
            if error is not None:
                log.error("live run under policy %r aborted: %s", self.policy.name, error)
        self._write(
            tmp_dir, jobs, trace, allocations, decisions, capacity_log, spark, started, task_rows
        )

    def _start_arrivals(
        self, pending: list[_Job], now: float, spark: _Spark, trace: list[TraceRow]
    ) -> bool:
        """Start the thread of every job whose arrival time has come (lock held)."""
        from pyspark import InheritableThread

        arrived = False
        while pending and pending[0].spec.arrival_s <= now + 1e-9:
            job = pending.pop(0)
            job.state.start(now)
            # InheritableThread pins a JVM thread to the Python thread, so the job's FAIR pool
            # (a thread-local property) applies to the Spark jobs it submits.
            job.thread = InheritableThread(
                target=self._job_main, args=(job, spark, trace), name=f"slaq-{job.spec.job_id}"
            )
            job.thread.daemon = True
            job.thread.start()
            arrived = True
        return arrived

    def _check_capacity(
        self,
        spark: _Spark,
        total: int,
        lost_since: float | None,
        now: float,
        timeout: float,
        capacity_log: list[tuple[float, int]],
    ) -> tuple[int, float | None]:
        try:
            cap = self._read_capacity(spark)
        except Exception as exc:  # the master may be briefly unreachable
            log.warning("cannot read cluster capacity: %s", exc)
            cap = None if lost_since is None else 0
            if cap is None:
                return total, now if lost_since is None else lost_since
        if cap is None:
            return total, None
        if cap != total:
            log.warning("cluster capacity changed from %d to %d cores at t=%.1fs", total, cap, now)
            capacity_log.append((now, cap))
        if cap > 0:
            return cap, None
        lost_since = now if lost_since is None else lost_since
        if now - lost_since > timeout:
            raise LiveRunError(
                f"no Spark executor cores for {now - lost_since:.0f}s (all workers lost?); "
                "the run cannot finish"
            )
        return 0, lost_since

    def _abort_jobs(self, jobs: Sequence[_Job], spark: _Spark) -> None:
        running = [j for j in jobs if j.thread is not None and j.thread.is_alive()]
        if not running:
            return
        with self._cond:
            self._aborted = True
            self._cond.notify_all()
        with contextlib.suppress(Exception):
            spark.sc.cancelAllJobs()
        deadline = time.monotonic() + 30.0
        for job in running:
            assert job.thread is not None
            job.thread.join(timeout=max(deadline - time.monotonic(), 0.1))

    def _write(
        self,
        tmp_dir: Path,
        jobs: Sequence[_Job],
        trace: list[TraceRow],
        allocations: list[AllocationRow],
        decisions: list[float],
        capacity_log: list[tuple[float, int]],
        spark: _Spark | None,
        started: float,
        task_rows: list[dict[str, Any]],
    ) -> None:
        never = [j.spec.job_id for j in jobs if j.state.status == PENDING]
        if never:
            raise LiveRunError(f"jobs {never} never started")
        failed = {j.spec.job_id: j.state.failure for j in jobs if j.state.status == FAILED}
        d = np.asarray(decisions) if decisions else np.zeros(1)
        meta = {
            "run_id": self._run_id,
            "mode": "live",
            "policy": self.policy.name,
            "policy_repr": repr(self.policy),
            "config": dict(self.config or {}),
            "workload": self.workload.to_dict(),
            "seed": self.seed,
            "cores": self.total_cores,
            "epoch_s": self.epoch_s,
            "spark_master": self.master_url,
            "spark_app_id": spark.app_id if spark else None,
            "spark_startup_s": spark.startup_s if spark else None,
            "spark_context_shared": bool(spark and not spark.owned),
            "native_fair": bool(getattr(self.policy, "native_fair", False)),
            "cpu_budget": self.cpu_budget,
            "physical_cores": self.physical_cores,
            "capacity_changes": capacity_log,
            "datasets": {
                j.data.dataset: {
                    "rows": j.data.blockset.n_rows,
                    "features": j.data.blockset.n_features,
                    "blocks": j.data.blockset.n_blocks,
                    "task": j.data.task,
                }
                for j in jobs
            },
            "versions": environment_versions(include_java=True),
            "start_time": started,
            "end_time": time.time(),
            "exit_status": "ok" if not failed else f"{len(failed)} jobs failed",
            "decision_ms_p50": float(np.percentile(d, 50)),
            "decision_ms_p99": float(np.percentile(d, 99)),
            "decisions": len(decisions),
            "jobs": {
                j.spec.job_id: {
                    "status": j.state.status,
                    "failure": j.state.failure,
                    "iterations": len(j.state.history),
                    "started_s": j.state.started_s,
                    "finished_s": j.state.finished_s,
                    "rows": sum(b - a for _, a, b in j.items),
                    "blocks": len(j.items),
                    "cpu_s": j.ctx.cpu_s_total if j.ctx else 0.0,
                    "wait_s": j.ctx.wait_s_total if j.ctx else 0.0,
                }
                for j in jobs
            },
        }
        trace_sorted = sorted(trace, key=lambda r: (r.job_id, r.iteration))
        tmp_dir.mkdir(parents=True, exist_ok=True)
        if self.task_log:
            write_table_atomic(task_rows, TASK_LOG_SCHEMA, tmp_dir / TASK_LOG_FILE)
        write_run(tmp_dir, trace_sorted, allocations, meta)
        for job_id, reason in failed.items():
            log.error("job %s failed: %s", job_id, reason)


def run_live(
    workload: Workload,
    policy: Policy,
    *,
    master_url: str,
    total_cores: int,
    epoch_s: float,
    seed: int,
    out_dir: Path,
    data_dir: Path | None = None,
    progress: bool = True,
    cpu_budget: bool = True,
    physical_cores: int | None = None,
    executor_memory: str = "2g",
    webui_url: str | None = None,
    n_blocks: int | None = None,
    max_time_s: float | None = None,
    task_log: bool = False,
    config: Mapping[str, Any] | None = None,
    dataset_loader: Callable[[str], Any] | None = None,
    trainer_factory: TrainerFactory | None = None,
    on_epoch: Callable[[EpochInfo], None] | None = None,
    spark_context: Any | None = None,
) -> Path:
    """Run ``workload`` on the Spark master ``master_url`` under ``policy``; return ``out_dir``.

    ``total_cores`` is the cluster's task slots; with ``webui_url`` (the master's web UI) the
    capacity is re-read every epoch so a lost worker makes the policy re-plan. ``cpu_budget``
    enforces the per-epoch CPU-time budget ``a_j * epoch_s * physical_cores / total_cores``
    (``physical_cores`` defaults to this machine's CPUs for a loopback master, else to
    ``total_cores``). ``data_dir`` is the dataset cache and holds reusable blocks; without it
    the blocks live in a temporary folder removed after the run. ``n_blocks`` defaults to
    ``max(48, 4 * total_cores)``. ``task_log`` also writes Spark's own per-task records
    (``spark_tasks.parquet``). ``dataset_loader(name)`` and ``trainer_factory(spec, d, k,
    params)`` replace the default data set registry and algorithm registry; ``on_epoch`` is
    called after every scheduling decision. ``spark_context`` runs on an existing context from
    :func:`start_spark_context` (left running) instead of starting and stopping one. Raises
    :class:`LiveRunError` (and leaves no output) if the run cannot finish, and
    :class:`~slaq.policy.PolicyError` if the policy fails or returns an invalid allocation.
    """
    return LiveRun(
        workload=workload,
        policy=policy,
        master_url=master_url,
        total_cores=total_cores,
        epoch_s=epoch_s,
        seed=seed,
        out_dir=Path(out_dir),
        data_dir=None if data_dir is None else Path(data_dir),
        progress=progress,
        cpu_budget=cpu_budget,
        physical_cores=physical_cores,
        executor_memory=executor_memory,
        webui_url=webui_url,
        n_blocks=n_blocks,
        max_time_s=max_time_s,
        task_log=task_log,
        config=config,
        dataset_loader=dataset_loader,
        trainer_factory=trainer_factory,
        on_epoch=on_epoch,
        spark_context=spark_context,
    ).run()


# --------------------------------------------------------------------------- helpers


def _prior_work_s(spec: JobSpec, data: JobData, items: Sequence[Item]) -> float:
    """One-core CPU seconds per iteration predicted before the job has run."""
    try:
        from slaq.algorithms import estimate_iteration_cpu_s

        rows = sum(b - a for _, a, b in items)
        return float(
            estimate_iteration_cpu_s(
                spec.algorithm,
                rows,
                data.n_features,
                n_outputs_for(spec, data),
                trainer_params(spec),
            )
        )
    except Exception:  # no cost model for this algorithm: the runtime model learns quickly
        return spec.work_s


def _write_pools(path: Path, job_ids: Sequence[str]) -> Path:
    """Spark FAIR pool file: one equal-weight pool per job (FIFO inside the pool)."""
    from xml.sax.saxutils import quoteattr

    pools = "".join(
        f"  <pool name={quoteattr(job_id)}><schedulingMode>FIFO</schedulingMode>"
        "<weight>1</weight><minShare>0</minShare></pool>\n"
        for job_id in job_ids
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<?xml version="1.0"?>\n<allocations>\n{pools}</allocations>\n')
    return path


def _install_dir(tmp: Path, out: Path) -> None:
    """Move a finished run directory into place, replacing an older run of the same name."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def start_spark_context(
    master_url: str,
    *,
    total_cores: int,
    app_name: str = "slaq",
    executor_memory: str = "2g",
    pools_file: Path | None = None,
    task_log: bool = False,
    ready_timeout_s: float = 180.0,
) -> Any:
    """A SparkContext set up for the engine, returned once ``total_cores`` cores registered.

    FAIR scheduler, loopback-only driver for a loopback master (sets ``SPARK_LOCAL_IP`` and
    ``PYSPARK_PYTHON`` in this process's environment), one BLAS thread per task, and the
    numeric stack pre-imported in the PySpark daemon. Stop it with :func:`stop_spark_context`.
    """
    from pyspark import SparkConf, SparkContext

    if SparkContext._active_spark_context is not None:
        raise LiveRunError("a SparkContext is already running in this process")
    t0 = time.monotonic()
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings = {
        "spark.scheduler.mode": "FAIR",
        "spark.executor.memory": executor_memory,
        # Tasks carry block ids only; waiting for a "local" slot would just idle cores.
        "spark.locality.wait": "0s",
        "spark.python.worker.reuse": "true",
        "spark.python.daemon.module": "slaq.spark.context",
        "spark.ui.showConsoleProgress": "false",
        "spark.ui.port": str(free_port()),
        "spark.ui.retainedStages": "100000" if task_log else "1000",
        "spark.ui.retainedJobs": "100000" if task_log else "1000",
        "spark.ui.retainedTasks": "1000000" if task_log else "100000",
    }
    if pools_file is not None:
        settings["spark.scheduler.allocation.file"] = str(pools_file)
    for name in SINGLE_THREAD_ENV:
        settings[f"spark.executorEnv.{name}"] = "1"
    if is_loopback_master(master_url):
        # Without SPARK_LOCAL_IP the driver UI listens on every interface (docs/design.md §7).
        os.environ["SPARK_LOCAL_IP"] = LOOPBACK
        settings["spark.driver.host"] = LOOPBACK
        settings["spark.driver.bindAddress"] = LOOPBACK
    conf = SparkConf().setMaster(master_url).setAppName(app_name)
    for key, value in settings.items():
        conf.set(key, value)
    with warnings.catch_warnings():
        # PySpark warns about pandas versions at start-up; the engine uses no pandas UDFs.
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        sc = SparkContext(conf=conf)
    try:
        sc.setLogLevel("WARN")
        log.info("SparkContext created in %.1fs", time.monotonic() - t0)
        deadline = time.monotonic() + ready_timeout_s
        jsc = sc._jsc.sc()
        # defaultParallelism reports at least 2 even without executors, hence the count.
        while jsc.getExecutorMemoryStatus().size() < 2 or sc.defaultParallelism < total_cores:
            if time.monotonic() > deadline:
                executors = jsc.getExecutorMemoryStatus().size() - 1
                raise LiveRunError(
                    f"application {sc.applicationId} at {master_url} got {executors} executors "
                    f"and not the {total_cores} cores expected after {ready_timeout_s:.0f}s (is "
                    f"the executor memory {executor_memory} larger than the workers' memory?)"
                )
            time.sleep(0.2)  # polls the driver's executor registry against the deadline
        log.info("executors registered after %.1fs", time.monotonic() - t0)
    except BaseException:
        stop_spark_context(sc)
        raise
    return sc


def stop_spark_context(sc: Any) -> None:
    """Stop ``sc`` and its driver JVM (the Py4J gateway), by PID if it does not go quietly."""
    from pyspark import SparkContext

    stopper = threading.Thread(target=sc.stop, name="slaq-sc-stop", daemon=True)
    stopper.start()
    stopper.join(timeout=60.0)
    if stopper.is_alive():
        log.warning("SparkContext.stop() hangs; killing the driver JVM")
    gateway = SparkContext._gateway
    if gateway is not None:
        with contextlib.suppress(Exception):
            gateway.shutdown()
        proc = getattr(gateway, "proc", None)
        if proc is not None:
            # The driver JVM exits when its stdin closes; SIGTERM/SIGKILL if it does not.
            with contextlib.suppress(Exception):
                proc.stdin.close()
            try:
                proc.wait(timeout=15)
            except Exception:
                stop_pids([proc.pid], grace_s=10)
                with contextlib.suppress(Exception):
                    proc.wait(timeout=5)
    SparkContext._gateway = None
    SparkContext._jvm = None
    SparkContext._active_spark_context = None


def _parse_spark_time(text: str) -> float:
    """Seconds since the epoch from Spark's REST time stamps (``2024-01-01T00:00:00.000GMT``)."""
    from datetime import datetime

    stamp = datetime.strptime(text.replace("GMT", ""), "%Y-%m-%dT%H:%M:%S.%f")
    return stamp.replace(tzinfo=UTC).timestamp()


def _fetch_task_log(ui_url: str, app_id: str, since: float = 0.0) -> list[dict[str, Any]]:
    """Spark's own record of the application's tasks launched after ``since`` (REST API)."""
    import json

    base = f"{ui_url.rstrip('/')}/api/v1/applications/{app_id}"
    with urllib.request.urlopen(f"{base}/stages?details=true", timeout=60) as response:
        stages = json.loads(response.read().decode())
    rows = []
    for stage in stages:
        pool = stage.get("schedulingPool") or ""
        for task in (stage.get("tasks") or {}).values():
            if "launchTime" not in task or _parse_spark_time(task["launchTime"]) < since:
                continue
            rows.append(
                {
                    "job_id": pool,
                    "stage_id": int(stage["stageId"]),
                    "stage_attempt": int(stage.get("attemptId", 0)),
                    "description": stage.get("description") or "",
                    "task_id": int(task["taskId"]),
                    "executor_id": str(task.get("executorId", "")),
                    "status": str(task.get("status", "")),
                    "launch_s": _parse_spark_time(task["launchTime"]),
                    "duration_s": float(task.get("duration", 0)) / 1e3,
                }
            )
    return rows


def _progress_bar(total: int, policy: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=f"{policy}: jobs done", unit="job", file=sys.stderr)


def _update_bar(bar: Any, info: EpochInfo, rate: float) -> None:
    bar.n = info.finished
    alloc = " ".join(f"{k}:{v}" for k, v in sorted(info.allocation.items()))
    if len(alloc) > 60:
        alloc = alloc[:57] + "..."
    bar.set_postfix_str(
        f"active={info.active} it/s={rate:.2f} cores={info.total_cores} alloc=[{alloc}]",
        refresh=False,
    )
    bar.refresh()
