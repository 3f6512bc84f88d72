"""CPU utilisation of live runs (slaq.spark.utilisation): accounting, rows, file format."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from slaq.spark.utilisation import (
    UTILISATION_FILE,
    UTILISATION_SCHEMA,
    ProcessTreeCPU,
    UtilisationSampler,
    executor_pids,
    machine_busy_s,
    summarize,
    write_utilisation,
)

# A child that burns a fixed amount of its own CPU time, then waits for stdin to close.
BURN = (
    "import sys, time\n"
    "t0 = time.process_time()\n"
    "while time.process_time() - t0 < float(sys.argv[1]):\n"
    "    pass\n"
    "print('burnt', flush=True)\n"
    "sys.stdin.read()\n"
)


def _burner(cpu_s: float, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", BURN, str(cpu_s), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "burnt"
    return proc


def _finish(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)


class FakeTracker:
    """Cumulative CPU seconds read from a list, one value per call."""

    def __init__(self, values: list[float]) -> None:
        self.values = list(values)

    def total(self) -> float:
        return self.values.pop(0)


def test_process_tree_counts_a_child_and_keeps_it_after_exit() -> None:
    tracker = ProcessTreeCPU([os.getpid()])
    before = tracker.total()
    child = _burner(0.3)
    try:
        during = tracker.total()
    finally:
        _finish(child)
    after = tracker.total()
    # The child's 0.3 CPU s are in the tree's total, and stay counted once it has exited.
    assert during - before >= 0.25
    assert after >= during


def test_process_tree_ignores_vanished_roots() -> None:
    child = _burner(0.0)
    pid = child.pid
    _finish(child)
    assert ProcessTreeCPU([pid]).total() == 0.0


def test_sampler_rows_are_cpu_seconds_per_wall_second() -> None:
    times = iter([10.0, 12.0, 16.0])
    sampler = UtilisationSampler(
        FakeTracker([5.0, 8.0, 10.0]),
        clock=lambda: next(times),
        physical_cpus=2,
        machine=FakeTracker([100.0, 103.0, 111.0]).total,
    )
    assert sampler.sample() is None  # the first sample only starts an interval
    first = sampler.sample()
    second = sampler.sample()
    assert first is not None and second is not None
    assert (first["t_s"], first["interval_s"], first["cpu_busy"]) == (12.0, 2.0, 1.5)
    assert first["machine_busy"] == 1.5
    assert (second["interval_s"], second["cpu_busy"], second["machine_busy"]) == (4.0, 0.5, 2.0)
    assert first["physical_cpus"] == 2
    # Time-weighted: (1.5 * 2 + 0.5 * 4) / 6.
    assert summarize(sampler.rows)["cpu_busy"] == pytest.approx(5.0 / 6.0)
    assert summarize([]) == {"wall_s": 0.0, "cpu_busy": 0.0, "machine_busy": 0.0}


def test_sampler_skips_an_empty_interval() -> None:
    sampler = UtilisationSampler(FakeTracker([1.0, 2.0]), clock=lambda: 3.0, machine=lambda: 0.0)
    assert sampler.sample() is None
    assert sampler.sample() is None
    assert sampler.rows == []


def test_machine_busy_grows() -> None:
    first = machine_busy_s()
    _finish(_burner(0.1))
    assert machine_busy_s() > first


def test_write_utilisation_round_trip(tmp_path) -> None:
    times = iter([0.0, 3.0, 6.0])
    sampler = UtilisationSampler(
        FakeTracker([0.0, 3.0, 9.0]), clock=lambda: next(times), physical_cpus=2,
        machine=FakeTracker([0.0, 6.0, 12.0]).total,
    )  # fmt: skip
    for _ in range(3):
        sampler.sample()
    write_utilisation(sampler, tmp_path)
    table = pq.read_table(tmp_path / UTILISATION_FILE)
    assert table.schema.equals(UTILISATION_SCHEMA)
    assert table.column("t_s").to_pylist() == [3.0, 6.0]
    np.testing.assert_allclose(table.column("cpu_busy").to_pylist(), [1.0, 2.0])
    write_utilisation(None, tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_executor_pids_matches_the_application_id() -> None:
    fake = _burner(0.0, "CoarseGrainedExecutorBackend", "--app-id", "app-20990101-4242")
    try:
        assert fake.pid in executor_pids("app-20990101-4242")
        assert fake.pid not in executor_pids("app-20990101-4243")
    finally:
        _finish(fake)


@pytest.mark.spark
def test_live_run_records_utilisation_per_decision(spark_cluster, tmp_path) -> None:
    from slaq.policy import load_policy
    from slaq.spark.engine import run_live
    from slaq.traces import read_run
    from tests.test_spark_engine import tiny_workload

    out = run_live(
        tiny_workload(max_iter=5),
        load_policy("fair"),
        master_url=spark_cluster.master_url,
        total_cores=spark_cluster.total_cores,
        epoch_s=1.0,
        seed=3,
        out_dir=tmp_path / "run",
        progress=False,
        max_time_s=240,
        auth_secret=spark_cluster.secret,
        n_blocks=16,
    )
    table = pq.read_table(out / UTILISATION_FILE)
    assert table.schema.equals(UTILISATION_SCHEMA)
    rows = table.to_pylist()
    assert rows, "no utilisation rows"
    assert all(r["interval_s"] > 0 and r["cpu_busy"] >= 0 for r in rows)
    assert {r["physical_cpus"] for r in rows} == {len(os.sched_getaffinity(0))}
    # The executors' Python workers did the training: the run's processes used CPU.
    assert sum(r["cpu_busy"] * r["interval_s"] for r in rows) > 0.1
    times = [r["t_s"] for r in rows]
    assert times == sorted(times)
    summary = read_run(out)["utilisation"]
    assert summary["wall_s"] == pytest.approx(sum(r["interval_s"] for r in rows))
    assert summary["cpu_busy"] > 0
