"""The iteration breakdown (slaq.spark.context) and the scaling benchmark's pure parts."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from slaq.blocks import write_blocks
from slaq.spark.context import IterationTiming, iteration_timing, run_partition
from slaq.spark.params import ParamsFile

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def scaling(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the benchmark imports its siblings
    return importlib.import_module("scaling")


def _sum_block(params: float, X, y) -> tuple:
    return (float(X.shape[0]), float(np.sum(X)) * params)


def test_run_partition_reports_data_and_compute_and_sums_every_item(tmp_path: Path) -> None:
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    blockset = write_blocks(X, np.zeros(20, np.int32), tmp_path / "b", 4)
    items = [(0, 0, 5), (1, 1, 4), (3, 0, 5)]
    [(acc, cpu_s, t0, t1, pid, data_s, compute_s)] = list(
        run_partition(_sum_block, 2.0, str(blockset.directory), iter(items))
    )
    rows = np.concatenate([X[0:5], X[6:9], X[15:20]])
    assert acc == (13.0, pytest.approx(2.0 * rows.sum()))
    assert pid == os.getpid()
    assert t1 >= t0 and cpu_s >= 0.0
    assert data_s >= 0.0 and compute_s >= 0.0
    assert data_s + compute_s <= (t1 - t0) + 1e-3
    # A live job's tasks get a ParamsFile: the same sums from the parameters it last wrote.
    params = ParamsFile(str(tmp_path / "params.pkl"))
    params.write(3.0)
    [(acc_file, *_)] = list(run_partition(_sum_block, params, str(blockset.directory), items))
    assert acc_file == (13.0, pytest.approx(3.0 * rows.sum()))


def test_iteration_timing_follows_the_task_that_finished_last() -> None:
    results = [
        # (sum, cpu_s, t0, t1, pid, data_s, compute_s)
        ((1.0,), 0.4, 100.2, 100.8, 11, 0.1, 0.4),
        ((1.0,), 0.5, 100.3, 101.0, 12, 0.05, 0.6),
        ((1.0,), 0.3, 100.25, 100.6, 11, 0.02, 0.3),
    ]
    t = iteration_timing(100.0, 100.1, 101.2, results)
    assert isinstance(t, IterationTiming)
    assert (t.tasks, t.pids) == (3, 2)
    assert t.launch_s == pytest.approx(0.2) and t.first_launch_s == pytest.approx(0.1)
    assert (t.data_s, t.compute_s, t.task_cpu_s) == (0.05, 0.6, 0.5)
    assert t.cpu_s == pytest.approx(1.2)
    phases = t.submit_s + t.launch_s + t.data_s + t.compute_s + t.task_other_s + t.result_s
    assert phases == pytest.approx(t.t_done - t.t_request)


def _timing(t_request: float, t_done: float, compute_s: float) -> IterationTiming:
    return iteration_timing(
        t_request, t_request + 0.05, t_done, [((0.0,), 1.0, t_request + 0.1, t_done - 0.1,
                                                1, 0.0, compute_s)]
    )  # fmt: skip


def test_breakdown_medians_and_driver_gap(scaling) -> None:
    timings = [_timing(0.0, 1.0, 0.7), _timing(1.2, 2.0, 0.5), _timing(2.3, 3.0, 0.5)]
    out = scaling.breakdown(timings, hold_end=10.0)
    assert out["n"] == 2  # the first iteration only anchors the first gap
    assert out["driver_s"] == pytest.approx(0.25)  # gaps of 0.2 and 0.3
    assert out["period_s"] == pytest.approx(1.0)
    assert out["overhead_s"] == pytest.approx(0.5)  # period minus data and compute
    assert scaling.breakdown(timings, hold_end=2.5)["n"] == 1
    assert scaling.breakdown(timings[:1], hold_end=10.0) == {}


def test_rows_for_measures_its_way_to_the_asked_iteration_cost(scaling) -> None:
    # CPU time of the trainer's own block function (process accounting), so a busy CI
    # machine moves it little; the calibration stops within 10%, the bound leaves room.
    (small, small_s), (big, big_s) = scaling.rows_for(0.15), scaling.rows_for(0.45)
    assert small_s == pytest.approx(0.15, rel=0.25)
    assert big_s == pytest.approx(0.45, rel=0.25)
    assert 2.0 < big / small < 4.5


def _single(ipm: float, busy: float) -> dict:
    return {
        "jobs": {"j": {"spark_jobs_per_min": ipm, "task_cpus": busy - 0.1}},
        "utilisation": {"cpu_busy": busy},
        "loadavg_before": [1.5, 1.0, 1.0],
    }


def test_plot_scaling_draws_a_png(scaling, tmp_path: Path) -> None:
    data = {
        "physical_cpus": 2,
        "results": {
            "1.0": {
                "measured_cpu_s": 1.02,
                "single": {"1": _single(50, 0.9), "4": _single(90, 1.7), "8": _single(95, 1.8)},
            }
        },
    }
    src = tmp_path / "scaling.json"
    src.write_text(json.dumps(data))
    png = tmp_path / "fig" / "scaling.png"
    scaling.plot_scaling(src, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- work-conserving CPU budget


def _gates(n: int, cores: int = 2, grant_s: float = 1.0) -> list:
    import threading

    from slaq.spark.context import JobGate

    cond = threading.Condition()
    gates = [JobGate(cond=cond, cores=cores, grant_s=grant_s) for _ in range(n)]
    for gate in gates:
        gate.peers = gates
    return gates


def test_budget_refills_early_when_every_job_is_out_of_budget_and_idle() -> None:
    a, b, c = _gates(3)
    a.balance_s, b.balance_s, c.balance_s = -0.5, 0.0, -2.5
    c.grant_s = 3.0
    with a.cond:
        assert a.refill_if_idle()
    # Each got one more epoch's grant, debts carried over: proportions stay as the cores.
    assert (a.balance_s, b.balance_s, c.balance_s) == (0.5, 1.0, 0.5)
    assert a.ready() and b.ready() and c.ready()


def test_budget_does_not_refill_while_a_job_runs_or_can_run() -> None:
    a, b = _gates(2)
    a.balance_s, b.balance_s = -0.5, -0.5
    b.in_flight = True  # b's tasks keep the CPUs busy
    with a.cond:
        assert not a.refill_if_idle()
    b.in_flight, b.balance_s = False, 0.2  # b may start an iteration itself
    with a.cond:
        assert not a.refill_if_idle()
    assert (a.balance_s, b.balance_s) == (-0.5, 0.2)


def test_budget_refill_ignores_jobs_without_cores_and_unbudgeted_gates() -> None:
    a, b = _gates(2)
    a.balance_s = -0.5
    b.cores, b.in_flight = 0, True  # a job with no cores (finished or starved) does not count
    with a.cond:
        assert a.refill_if_idle()
    assert a.balance_s == 0.5
    a.budgeted, a.balance_s = False, -0.5
    with a.cond:
        assert not a.refill_if_idle()
    zero = _gates(1, grant_s=0.0)[0]
    zero.balance_s = -1.0
    with zero.cond:
        assert not zero.refill_if_idle()  # nothing to grant: wait for the tick


class _FakeRDD:
    """Runs a partition function in-process over ``n`` round-robin slices (no Spark)."""

    def __init__(self, items: list, n: int, fn=None) -> None:
        self.items, self.n, self.fn = items, n, fn
        self._jrdd = object()

    built = 0  # task RDDs made by mapPartitions, over all instances

    def mapPartitions(self, fn):  # noqa: N802 - PySpark's name
        _FakeRDD.built += 1
        return _FakeRDD(self.items, self.n, fn)

    def collect(self) -> list:
        return [r for i in range(self.n) for r in self.fn(iter(self.items[i :: self.n]))]


class _FakeSC:
    def __init__(self) -> None:
        self.tasks: list[int] = []

    def setLocalProperty(self, key: str, value: str) -> None:  # noqa: N802 - PySpark's name
        pass

    def parallelize(self, items: list, n: int) -> _FakeRDD:
        self.tasks.append(n)
        return _FakeRDD(list(items), n)


def test_lone_job_out_of_budget_runs_without_waiting_for_a_tick(tmp_path: Path) -> None:
    from slaq.jobstate import JobState
    from slaq.predict import RuntimeModel
    from slaq.spark.context import SparkTrainContext
    from slaq.workload import parse_workload

    X = np.ones((40, 2), dtype=np.float32)
    blockset = write_blocks(X, np.zeros(40, np.int32), tmp_path / "b", 8)
    spec = parse_workload(
        {"jobs": [{"id": "j", "algorithm": "mlp", "dataset": "d", "arrival_s": 0.0}]}
    ).jobs[0]
    state = JobState(spec, RuntimeModel())
    state.start(0.0)
    [gate] = _gates(1, cores=3, grant_s=0.5)
    gate.balance_s = -4.0  # deep in debt, and no other job: the machine would idle
    sc = _FakeSC()
    ctx = SparkTrainContext(
        sc=sc, state=state, gate=gate, items=[(i, 0, 5) for i in range(8)],
        directory=str(blockset.directory), params_file=str(tmp_path / "j.params"), run_id="r",
        policy="p", clock=lambda: 0.0, trace=[], on_change=lambda: None,
    )  # fmt: skip
    acc = ctx.map_reduce(_sum_block, 1.0)
    assert acc == (40.0, 80.0)
    assert sc.tasks == [3]
    assert not gate.in_flight
    # Nine early rounds of 0.5 s took the debt of 4.0 s positive, then the job's CPU was charged.
    assert gate.balance_s == pytest.approx(0.5 - ctx.cpu_s_total)
    [timing] = ctx.timings
    assert timing.tasks == 3 and timing.pids == 1
    # Full-data iterations reuse the items and the task RDD, with the parameters of the call;
    # a mini-batch gets its own.
    built = _FakeRDD.built
    assert ctx.map_reduce(_sum_block, 2.0) == (40.0, 160.0)
    assert _FakeRDD.built == built
    assert ctx.map_reduce(_sum_block, 1.0, blocks=[0, 7]) == (10.0, 20.0)
    assert sc.tasks == [3, 2] and _FakeRDD.built == built + 1


def test_worker_daemon_freezes_its_imports_before_forking(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    import pyspark.daemon

    from slaq.spark.daemon import daemon_main

    seen = []
    # PySpark's manager() forks the workers: by then the daemon's objects must be frozen, or
    # every reused worker's gc.collect() after a task walks them all (~44 ms of CPU each).
    monkeypatch.setattr(pyspark.daemon, "manager", lambda: seen.append(gc.get_freeze_count()))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, "1"))
    gc.unfreeze()
    try:
        daemon_main()
    finally:
        gc.unfreeze()
    assert len(seen) == 1 and seen[0] > 10_000
