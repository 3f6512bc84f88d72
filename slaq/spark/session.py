"""The live engine's SparkContext: start, warm up, FAIR pools, stop, and Spark's task log.

FAIR scheduler with one pool per job, loopback-only driver for a loopback master, one BLAS
thread per task, the numeric stack pre-imported in the PySpark daemon (docs/design.md §7).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa

from slaq.spark.auth import driver_secret
from slaq.spark.context import warm_partition
from slaq.spark.daemon import SINGLE_THREAD_ENV
from slaq.spark.procs import (
    APP_JVM_FLAGS,
    LOOPBACK,
    children_since,
    free_port,
    is_loopback_master,
    route_address,
    stop_pids,
)
from slaq.spark.signals import keep_signal_handlers

log = logging.getLogger(__name__)
# py4j logs every closed connection at INFO.
logging.getLogger("py4j").setLevel(logging.WARNING)

TASK_LOG_FILE = "spark_tasks.parquet"
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
    """The live run could not finish (no executors, lost cluster, SparkContext died, time limit)."""


@dataclass
class SparkSession:
    """A SparkContext the run uses, and whether the run owns (and stops) it."""

    sc: Any
    app_id: str
    ui_url: str | None
    owned: bool
    startup_s: float = 0.0
    # Wall seconds of an empty Spark job over every slot: the fixed cost of one iteration.
    fixed_cost_s: float = 0.0


def warm_up(sc: Any, total_cores: int, directories: Sequence[str]) -> float:
    """Start the Python daemons, map the blocks; return the fixed cost of one more empty job.

    The first job pays for the daemons' start-up; the second, timed, is what every iteration
    pays on top of its compute (scheduling, task launch, result transfer): the runtime model's
    prior for the fixed cost, measured rather than assumed (docs/design.md §2).
    """
    warm = sc.parallelize(range(total_cores), total_cores)
    warm.mapPartitions(functools.partial(warm_partition, list(directories))).collect()
    t0 = time.monotonic()
    warm.mapPartitions(functools.partial(warm_partition, [])).collect()
    return time.monotonic() - t0


def write_pools(path: Path, job_ids: Sequence[str]) -> Path:
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


def start_spark_context(
    master_url: str,
    *,
    total_cores: int,
    app_name: str = "slaq",
    executor_memory: str = "2g",
    pools_file: Path | None = None,
    task_log: bool = False,
    ready_timeout_s: float = 180.0,
    auth_secret: str | None = None,
    driver_host: str | None = None,
) -> Any:
    """A SparkContext set up for the engine, returned once ``total_cores`` cores registered.

    FAIR scheduler, one BLAS thread per task, the numeric stack pre-imported in the PySpark
    daemon. The driver binds to one address (sets ``SPARK_LOCAL_IP`` and ``PYSPARK_PYTHON`` in
    this process's environment): loopback for a loopback master, else ``driver_host`` or the
    address routed to the master. ``auth_secret``: the cluster's shared secret
    (:mod:`slaq.spark.auth`). Stop it with :func:`stop_spark_context`.
    """
    from pyspark import SparkConf, SparkContext

    if SparkContext._active_spark_context is not None:
        raise LiveRunError("a SparkContext is already running in this process")
    t0 = time.monotonic()
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings = _engine_settings(executor_memory, task_log)
    if pools_file is not None:
        settings["spark.scheduler.allocation.file"] = str(pools_file)
    for name in SINGLE_THREAD_ENV:  # executor-side BLAS single-threaded: a task is one slot
        settings[f"spark.executorEnv.{name}"] = "1"
    settings.update(_bind_and_auth(master_url, driver_host, auth_secret is not None))
    conf = SparkConf().setMaster(master_url).setAppName(app_name)
    for key, value in settings.items():
        conf.set(key, value)
    sc = _create_context(conf, auth_secret)
    try:
        sc.setLogLevel("WARN")
        log.info("SparkContext created in %.1fs", time.monotonic() - t0)
        _await_executors(sc, master_url, total_cores, executor_memory, ready_timeout_s)
        log.info("executors registered after %.1fs", time.monotonic() - t0)
    except BaseException:
        stop_spark_context(sc)
        raise
    return sc


def _engine_settings(executor_memory: str, task_log: bool) -> dict[str, str]:
    """The engine's Spark settings that depend on neither the master nor authentication."""
    return {
        "spark.scheduler.mode": "FAIR",
        "spark.executor.memory": executor_memory,
        # Tasks carry block ids only; waiting for a "local" slot would just idle cores.
        "spark.locality.wait": "0s",
        "spark.python.worker.reuse": "true",
        "spark.python.daemon.module": "slaq.spark.daemon",
        # Unix sockets to the Python workers: over loopback TCP a task whose command and input
        # come as two small writes waited ~40 ms (Nagle's algorithm behind a delayed ACK) when
        # its worker had had another task within ~200 ms (docs/design.md §7). The socket files
        # go to the JVM's temp directory, connectable by this user only (umask).
        "spark.python.unix.domain.socket.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": APP_JVM_FLAGS,
        "spark.executor.extraJavaOptions": APP_JVM_FLAGS,
        "spark.ui.port": str(free_port()),
        "spark.ui.retainedStages": "100000" if task_log else "1000",
        "spark.ui.retainedJobs": "100000" if task_log else "1000",
        "spark.ui.retainedTasks": "1000000" if task_log else "100000",
    }


def _bind_and_auth(master_url: str, driver_host: str | None, auth: bool) -> dict[str, str]:
    """Driver settings: one explicit bind address, and authentication on if ``auth``.

    Without SPARK_LOCAL_IP the driver UI listens on every interface (docs/design.md §7), and
    attach mode must not default to 0.0.0.0 either: loopback for a loopback master, else
    ``driver_host`` or the address routed to the master. Sets ``SPARK_LOCAL_IP``.
    """
    bind = LOOPBACK if is_loopback_master(master_url) else driver_host or route_address(master_url)
    os.environ["SPARK_LOCAL_IP"] = bind
    settings = {"spark.driver.host": bind, "spark.driver.bindAddress": bind}
    if auth:
        # The secret itself reaches the JVM through a private file (driver_secret), never a
        # setting: PySpark puts every SparkConf entry on spark-submit's command line.
        settings["spark.authenticate"] = "true"
        settings["spark.ui.killEnabled"] = "false"
    return settings


def _create_context(conf: Any, auth_secret: str | None) -> Any:
    """``SparkContext(conf)``, keeping the run's signal handlers; no driver JVM left on failure.

    A signal or error while PySpark launches the driver JVM can leave it running with no
    gateway to stop it through (``SparkContext._gateway`` is set only once it answers): any
    ``spark-submit`` child started meanwhile is then stopped by PID.
    """
    from pyspark import SparkContext

    before = [p.pid for p in psutil.Process().children()]
    try:
        with (
            keep_signal_handlers(),  # PySpark installs its own SIGINT handler here
            driver_secret(auth_secret),
            warnings.catch_warnings(),
        ):
            # PySpark warns about pandas versions at start-up; the engine uses no pandas UDFs.
            warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
            return SparkContext(conf=conf)
    except BaseException:
        _stop_gateway()
        drivers = [p.pid for p in children_since(before) if _is_spark_submit(p)]
        if drivers:
            log.warning("stopping the driver JVM of a SparkContext that did not start: %s", drivers)
            stop_pids(drivers, grace_s=10)
        raise


def _is_spark_submit(proc: psutil.Process) -> bool:
    try:
        return "SparkSubmit" in " ".join(proc.cmdline()) or "spark-submit" in proc.name()
    except psutil.Error:
        return False


def _await_executors(
    sc: Any, master_url: str, total_cores: int, executor_memory: str, timeout_s: float
) -> None:
    """Return once ``total_cores`` executor cores registered; :class:`LiveRunError` after that."""
    deadline = time.monotonic() + timeout_s
    jsc = sc._jsc.sc()
    # defaultParallelism reports at least 2 even without executors, hence the count.
    while jsc.getExecutorMemoryStatus().size() < 2 or sc.defaultParallelism < total_cores:
        if time.monotonic() > deadline:
            executors = jsc.getExecutorMemoryStatus().size() - 1
            raise LiveRunError(
                f"application {sc.applicationId} at {master_url} got {executors} executors "
                f"and not the {total_cores} cores expected after {timeout_s:.0f}s (is "
                f"the executor memory {executor_memory} larger than the workers' memory?)"
            )
        time.sleep(0.2)  # polls the driver's executor registry against the deadline


def stop_spark_context(sc: Any) -> None:
    """Stop ``sc`` and its driver JVM (the Py4J gateway), by PID if it does not go quietly."""
    stopper = threading.Thread(target=sc.stop, name="slaq-sc-stop", daemon=True)
    stopper.start()
    stopper.join(timeout=60.0)
    if stopper.is_alive():
        log.warning("SparkContext.stop() hangs; killing the driver JVM")
    _stop_gateway()


def _stop_gateway() -> None:
    """Shut the Py4J gateway and its driver JVM down; forget both so a new context can start."""
    from pyspark import SparkContext

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


def fetch_task_log(ui_url: str, app_id: str, since: float = 0.0) -> list[dict[str, Any]]:
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
