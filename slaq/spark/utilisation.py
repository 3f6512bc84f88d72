"""CPU utilisation of a live run, from the processes' own accounting (docs/design.md §7).

A run's CPU is spent by the driver (this Python process and its JVM), the executor JVMs and
their Python daemons and workers. :class:`ProcessTreeCPU` sums ``user + system`` CPU seconds
over those process trees; :class:`UtilisationSampler` turns successive samples into one row per
interval (a scheduling epoch in the engine): CPUs the run kept busy, CPUs the whole machine kept
busy (other tenants included), and the machine's physical CPUs. The rows go to
``utilisation.parquet`` in the run directory (:data:`UTILISATION_SCHEMA`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa

log = logging.getLogger(__name__)

UTILISATION_FILE = "utilisation.parquet"
UTILISATION_SCHEMA = pa.schema(
    [
        ("t_s", pa.float64()),  # end of the interval, run clock (seconds since the run began)
        ("interval_s", pa.float64()),
        ("cpu_busy", pa.float64()),  # CPUs the run's processes kept busy (CPU s / wall s)
        ("machine_busy", pa.float64()),  # CPUs the whole machine kept busy (every tenant)
        ("physical_cpus", pa.int64()),
        ("loadavg_1m", pa.float64()),
    ]
)
EXECUTOR_CLASS = "CoarseGrainedExecutorBackend"


def _descendants(roots: Sequence[int]) -> list[int]:
    """``roots`` and all their descendants that are alive, from one scan of the process table."""
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info.get("ppid") or 0, []).append(proc.pid)
    seen: list[int] = []
    stack = [r for r in roots if psutil.pid_exists(r)]
    while stack:
        pid = stack.pop()
        if pid not in seen:
            seen.append(pid)
            stack.extend(children.get(pid, ()))
    return seen


def executor_pids(app_id: str) -> list[int]:
    """PIDs of this machine's executor JVMs of Spark application ``app_id``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        # The executor's command line names its application: ``--app-id <app_id>``.
        if any(EXECUTOR_CLASS in part for part in cmd) and app_id in cmd:
            found.append(proc.pid)
    return found


@dataclass
class ProcessTreeCPU:
    """Cumulative CPU seconds of a set of process trees, robust to processes coming and going.

    Every process seen is remembered with its last reading, so a worker that exits between two
    samples still counts what it spent up to the last sample (never less than before).
    """

    roots: Sequence[int]
    _last: dict[tuple[int, float], float] = field(default_factory=dict)

    def total(self) -> float:
        """CPU seconds (user + system) every process of the trees has spent so far."""
        for pid in _descendants(self.roots):
            try:
                proc = psutil.Process(pid)
                with proc.oneshot():
                    t = proc.cpu_times()
                    key = (pid, proc.create_time())
            except psutil.Error:
                continue  # exited since the scan: its last reading stands
            self._last[key] = t.user + t.system
        return sum(self._last.values())


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (everything but idle and iowait) so far."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


@dataclass
class UtilisationSampler:
    """One utilisation row per call to :meth:`sample`, covering the time since the last call.

    ``clock`` is the run's clock (monotonic seconds, the engine's ``driver.now``): the rows'
    ``t_s`` are on the same axis as the trace and the allocation rows.
    """

    tracker: Any  # anything with total() -> cumulative CPU seconds (ProcessTreeCPU)
    clock: Callable[[], float]
    physical_cpus: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    machine: Callable[[], float] = machine_busy_s
    rows: list[dict[str, float]] = field(default_factory=list)
    _prev: tuple[float, float, float] | None = None

    def sample(self) -> dict[str, float] | None:
        """Read the counters; return (and keep) the row of the interval that just ended."""
        now = (float(self.clock()), self.tracker.total(), self.machine())
        prev, self._prev = self._prev, now
        if prev is None or now[0] <= prev[0]:
            return None
        wall = now[0] - prev[0]
        row = {
            "t_s": now[0],
            "interval_s": wall,
            "cpu_busy": (now[1] - prev[1]) / wall,
            "machine_busy": (now[2] - prev[2]) / wall,
            "physical_cpus": self.physical_cpus,
            "loadavg_1m": os.getloadavg()[0],
        }
        self.rows.append(row)
        return row


def run_sampler(sc: Any, clock: Any, physical_cpus: int | None = None) -> UtilisationSampler | None:
    """A sampler over this process, the driver JVM and ``sc``'s executors on this machine.

    Executors are found by their command line; on a remote cluster none are found and only the
    driver is counted (logged), so ``cpu_busy`` is then a lower bound. Never raises: utilisation
    is a measurement and must not fail a run.
    """
    try:
        from pyspark import SparkContext

        app_id = sc.applicationId
        executors = executor_pids(app_id)
        if not executors:
            log.info("no local executors of %s: utilisation counts the driver only", app_id)
        proc = getattr(SparkContext._gateway, "proc", None)
        driver_jvm = [proc.pid] if proc is not None else []
        sampler = UtilisationSampler(ProcessTreeCPU([os.getpid(), *driver_jvm, *executors]), clock)
        if physical_cpus:
            sampler.physical_cpus = int(physical_cpus)
        sampler.sample()
        return sampler
    except Exception as exc:
        log.warning("CPU utilisation not recorded: %s", exc)
        return None


def write_utilisation(sampler: UtilisationSampler | None, run_dir: Path) -> None:
    """Write the sampler's rows to ``run_dir/utilisation.parquet`` (nothing without a sampler)."""
    from slaq.traces import write_table_atomic

    if sampler is not None:
        write_table_atomic(sampler.rows, UTILISATION_SCHEMA, Path(run_dir) / UTILISATION_FILE)


def summarize(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Time-weighted mean busy CPUs of the run and the machine over ``rows``."""
    wall = sum(r["interval_s"] for r in rows)
    if wall <= 0:
        return {"wall_s": 0.0, "cpu_busy": 0.0, "machine_busy": 0.0}
    return {
        "wall_s": wall,
        "cpu_busy": sum(r["cpu_busy"] * r["interval_s"] for r in rows) / wall,
        "machine_busy": sum(r["machine_busy"] * r["interval_s"] for r in rows) / wall,
    }
