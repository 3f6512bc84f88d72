"""Run a workload live on Spark under a policy and write its trace (docs/design.md §2).

:class:`LiveRun` prepares the data (:mod:`slaq.spark.data`), starts the SparkContext
(:mod:`slaq.spark.session`), and hands the run to the decision loop of :mod:`slaq.loop` with the
live driver (:mod:`slaq.spark.driver`): the same loop the simulator runs, on the wall clock.

Outputs (:mod:`slaq.traces`) go to a temporary sibling of ``out_dir`` that is renamed into place
only when the run completes: an interrupted or failed run leaves nothing that looks whole.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from slaq.algorithms import validate_job
from slaq.jobstate import FAILED, PENDING, JobState
from slaq.loop import DecisionStep, EpochInfo, run_loop, run_metadata
from slaq.policy import Policy
from slaq.predict import RuntimeModel
from slaq.spark.cluster import is_loopback_master, signals_as_exceptions
from slaq.spark.context import JobGate
from slaq.spark.data import (
    JobData,
    TrainerFactory,
    default_dataset_loader,
    default_trainer_factory,
    job_items,
    n_blocks_for,
    n_outputs_for,
    prepare_dataset,
    prior_work_s,
)
from slaq.spark.driver import LiveDriver, LiveJob
from slaq.spark.rundir import install_dir, remove_stale_scratch, scratch_dirs
from slaq.spark.session import (
    TASK_LOG_FILE,
    TASK_LOG_SCHEMA,
    LiveRunError,
    SparkSession,
    fetch_task_log,
    start_spark_context,
    stop_spark_context,
    warm_up,
    write_pools,
)
from slaq.spark.utilisation import UtilisationSampler, run_sampler, summarize, write_utilisation
from slaq.traces import write_run, write_table_atomic
from slaq.workload import Workload

log = logging.getLogger(__name__)

__all__ = [
    "TASK_LOG_FILE",
    "EpochInfo",
    "JobData",
    "LiveRun",
    "LiveRunError",
    "job_items",
    "prepare_dataset",
    "run_live",
    "start_spark_context",
    "stop_spark_context",
]


@dataclass
class LiveRun:
    """One live run; :func:`run_live` documents the parameters."""

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
    # The cluster's shared secret (slaq.spark.auth) and, in attach mode, the driver's address.
    auth_secret: str | None = field(default=None, repr=False)
    driver_host: str | None = None
    # CPU utilisation per decision (slaq.spark.utilisation), written as utilisation.parquet.
    _utilisation: UtilisationSampler | None = field(default=None, init=False, repr=False)

    def run(self) -> Path:
        """Execute the run; returns ``out_dir`` once complete."""
        if self.total_cores < 1:
            raise ValueError(f"total_cores must be >= 1, got {self.total_cores}")
        if not self.epoch_s > 0:
            raise ValueError(f"epoch_s must be > 0, got {self.epoch_s}")
        if not self.workload.jobs:
            raise ValueError(f"workload {self.workload.name!r} has no jobs")
        out_dir = Path(self.out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_scratch(out_dir)
        tmp_dir, scratch = scratch_dirs(out_dir)
        # Absolute: executors run in their own working directories.
        blocks_root = (
            Path(self.data_dir).resolve() / "blocks" if self.data_dir else scratch / "blocks"
        )
        env_keys = ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_LOCAL_IP")
        env_backup = {k: os.environ.get(k) for k in env_keys}
        try:
            with signals_as_exceptions():
                self._run(tmp_dir, blocks_root, scratch)
            install_dir(tmp_dir, out_dir)
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

    def _prepare_jobs(self, blocks_root: Path, cond: threading.Condition) -> dict[str, LiveJob]:
        loader = self.dataset_loader or default_dataset_loader(self.data_dir, self.seed)
        n_blocks = self.n_blocks or n_blocks_for(self.total_cores)
        data: dict[str, JobData] = {}
        raw: dict[str, Any] = {}
        for name in sorted({spec.dataset for spec in self.workload.jobs}):
            raw[name] = loader(name)
            data[name] = prepare_dataset(name, raw[name], blocks_root, n_blocks, self.seed)
        for spec in self.workload.jobs:
            # Bad data or parameters fail here, naming the job and field, before any Spark work.
            d = raw[spec.dataset]
            n_out = n_outputs_for(spec, data[spec.dataset])
            validate_job(spec.job_id, spec.algorithm, spec.params, d.X, d.y, n_out)
        native = self.policy.traits.native_fair
        jobs = {}
        for spec in self.workload.jobs:
            d = data[spec.dataset]
            rows = spec.params.get("rows")
            items = job_items(
                d.blockset, None if rows is None else int(rows), (self.seed, spec.seed)
            )
            state = JobState(spec, RuntimeModel(prior_work_s=prior_work_s(spec, d, items)))
            # A job cannot use more tasks than it has blocks.
            state.max_cores = len(items)
            gate = JobGate(cond=cond, native=native, budgeted=self.cpu_budget and not native)
            jobs[spec.job_id] = LiveJob(spec, state, gate, d, items)
        return jobs

    def _start_spark(self, directories: list[str], pools: Path) -> SparkSession:
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
                auth_secret=self.auth_secret,
                driver_host=self.driver_host,
            )
            owned = True
        spark = SparkSession(sc=sc, app_id=sc.applicationId, ui_url=sc.uiWebUrl, owned=owned)
        try:
            spark.fixed_cost_s = warm_up(sc, self.total_cores, directories)
        except BaseException:
            if owned:
                stop_spark_context(sc)
            raise
        spark.startup_s = time.monotonic() - t0
        log.info(
            "SparkContext %s ready with %d cores after %.1fs (empty job %.3fs, UI %s)",
            spark.app_id,
            sc.defaultParallelism,
            spark.startup_s,
            spark.fixed_cost_s,
            spark.ui_url,
        )
        return spark

    def _run(self, tmp_dir: Path, blocks_root: Path, scratch: Path) -> None:
        started = time.time()
        run_id = f"live-{self.policy.name}-{self.seed}-{uuid.uuid4().hex[:8]}"
        if self.physical_cores is None and is_loopback_master(self.master_url):
            self.physical_cores = len(os.sched_getaffinity(0))
        cond = threading.Condition()
        jobs = self._prepare_jobs(blocks_root, cond)
        directories = sorted({str(j.data.blockset.directory) for j in jobs.values()})
        pools = write_pools(scratch / "pools.xml", list(jobs))
        spark = self._start_spark(directories, pools)
        for job in jobs.values():
            # The measured fixed cost of an iteration on this cluster, not an assumed one.
            job.state.runtime.prior_overhead_s = spark.fixed_cost_s
        driver = LiveDriver(
            jobs=jobs,
            spark=spark,
            cond=cond,
            epoch_s=self.epoch_s,
            total_cores=self.total_cores,
            run_id=run_id,
            policy_name=self.policy.name,
            trainer_factory=self.trainer_factory or default_trainer_factory,
            physical_cores=self.physical_cores,
            webui_url=self.webui_url,
            max_time_s=self.max_time_s,
            lost_capacity_timeout_s=self.lost_capacity_timeout_s,
            params_dir=str(scratch),
        )
        self._utilisation = run_sampler(spark.sc, driver.now, self.physical_cores)
        step = DecisionStep(self.policy, run_id, self.epoch_s, fit_on_report=True)
        driver.on_loss = step.book.fit_reported
        task_rows = self._drive(step, driver, started)
        self._write(tmp_dir, step, driver, started, task_rows)

    def _drive(self, step: DecisionStep, driver: LiveDriver, started: float) -> list[dict]:
        """Run the loop to the end, then tear down Spark whatever happened."""
        bar = _progress_bar(len(driver.jobs), self.policy.name) if self.progress else None
        spark = driver.spark
        try:
            # One BLAS thread in the driver: the job threads' optimizer steps are small products,
            # and OpenBLAS's spinning threads on a busy machine made each step 40x slower
            # (85 vs 2 ms) while taking CPU from the tasks (benchmarks/scaling.py).
            with threadpool_limits(limits=1, user_api="blas"):
                run_loop(
                    step,
                    driver,
                    [j.state for j in driver.jobs.values()],
                    replan_on_events=self.replan_on_events,
                    on_decision=lambda info: self._on_decision(info, bar, driver),
                )
                driver.join()
            if self.task_log and spark.ui_url:
                return fetch_task_log(spark.ui_url, spark.app_id, since=started)
            return []
        except BaseException as exc:
            log.error("live run under policy %r aborted: %s", self.policy.name, exc)
            raise
        finally:
            if bar is not None:
                bar.close()
            driver.abort()
            if spark.owned:
                stop_spark_context(spark.sc)

    def _on_decision(self, info: EpochInfo, bar: Any, driver: LiveDriver) -> None:
        if bar is not None:
            _update_bar(bar, info, len(driver.trace))
        if self._utilisation is not None:
            self._utilisation.sample()
        if self.on_epoch is not None:
            self.on_epoch(info)

    def _write(
        self,
        tmp_dir: Path,
        step: DecisionStep,
        driver: LiveDriver,
        started: float,
        task_rows: list[dict],
    ) -> None:
        jobs = driver.jobs
        never = [j for j, job in jobs.items() if job.state.status == PENDING]
        if never:
            raise LiveRunError(f"jobs {never} never started")
        meta = run_metadata(
            step=step,
            mode="live",
            states={j: job.state for j, job in jobs.items()},
            config=self.config,
            seed=self.seed,
            cores=self.total_cores,
            started=started,
            replan_on_events=self.replan_on_events,
            include_java=True,
        )
        resources = self._job_resources(driver)
        for job_id, extra in resources.items():
            meta["jobs"][job_id].update(extra)
        meta.update(self._live_metadata(driver))
        if self._utilisation is not None:
            meta["utilisation"] = summarize(self._utilisation.rows)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        if self.task_log:
            write_table_atomic(task_rows, TASK_LOG_SCHEMA, tmp_dir / TASK_LOG_FILE)
        trace = sorted(driver.trace, key=lambda r: (r.job_id, r.iteration))
        write_run(tmp_dir, trace, step.allocations, meta)
        write_utilisation(self._utilisation, tmp_dir)
        for job_id, job in jobs.items():
            if job.state.status == FAILED:
                log.error("job %s failed: %s", job_id, job.state.failure)

    def _live_metadata(self, driver: LiveDriver) -> dict[str, Any]:
        """The run.json fields only a live run has (Spark, data, per-job CPU)."""
        spark = driver.spark
        jobs = driver.jobs.values()
        return {
            "workload": self.workload.to_dict(),
            "spark_master": self.master_url,
            "spark_app_id": spark.app_id,
            "spark_startup_s": spark.startup_s,
            "spark_fixed_cost_s": spark.fixed_cost_s,
            "spark_context_shared": not spark.owned,
            "cpu_budget": self.cpu_budget,
            "physical_cores": self.physical_cores,
            "capacity_changes": driver.capacity_log,
            "datasets": {
                j.data.dataset: {
                    "rows": j.data.blockset.n_rows,
                    "features": j.data.blockset.n_features,
                    "blocks": j.data.blockset.n_blocks,
                    "task": j.data.task,
                }
                for j in jobs
            },
        }

    @staticmethod
    def _job_resources(driver: LiveDriver) -> dict[str, dict[str, Any]]:
        """Per job: rows and blocks it trained on, CPU seconds spent and seconds waited."""
        return {
            j.spec.job_id: {
                "rows": sum(b - a for _, a, b in j.items),
                "blocks": len(j.items),
                "cpu_s": j.ctx.cpu_s_total if j.ctx else 0.0,
                "wait_s": j.ctx.wait_s_total if j.ctx else 0.0,
            }
            for j in driver.jobs.values()
        }


def run_live(workload: Workload, policy: Policy, **options: Any) -> Path:
    """Run ``workload`` on a Spark master under ``policy``; return the output directory.

    Options are :class:`LiveRun`'s fields: ``master_url``, ``total_cores`` (task slots),
    ``epoch_s``, ``seed`` and ``out_dir`` are required. With ``webui_url`` (the master's web UI)
    the capacity is re-read every epoch so a lost worker makes the policy re-plan.
    ``cpu_budget`` enforces the per-epoch CPU-time budget ``a_j * epoch_s * physical_cores /
    total_cores`` (``physical_cores`` defaults to this machine's CPUs for a loopback master).
    ``data_dir`` is the dataset cache and holds reusable blocks; ``n_blocks`` defaults to
    ``max(48, 4 * total_cores)``; ``replan_on_events`` re-plans on arrivals and job ends as
    well as at ticks; ``task_log`` also writes Spark's own per-task records;
    ``dataset_loader(name)`` and ``trainer_factory(spec, d, k, params)`` replace the dataset
    and algorithm registries; ``on_epoch`` is called after every decision; ``spark_context``
    runs on an existing context (left running). Raises :class:`LiveRunError` (leaving no
    output) if the run cannot finish, :class:`~slaq.policy.PolicyError` if the policy fails.
    """
    if "out_dir" in options:
        options["out_dir"] = Path(options["out_dir"])
    if options.get("data_dir") is not None:
        options["data_dir"] = Path(options["data_dir"])
    return LiveRun(workload=workload, policy=policy, **options).run()


def _progress_bar(total: int, policy: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=f"{policy}: jobs done", unit="job", file=sys.stderr)


def _update_bar(bar: Any, info: EpochInfo, iterations: int) -> None:
    bar.n = info.finished
    alloc = " ".join(f"{k}:{v}" for k, v in sorted(info.allocation.items()))
    if len(alloc) > 60:
        alloc = alloc[:57] + "..."
    bar.set_postfix_str(
        f"active={info.active} iterations={iterations} cores={info.total_cores} alloc=[{alloc}]",
        refresh=False,
    )
    bar.refresh()
