"""Live engine on Spark: end-to-end runs, enforced allocations, lost workers, signals."""

from __future__ import annotations

import math
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest

from slaq.policy import PolicyError, PolicyTraits, load_policy
from slaq.spark.cluster import LocalSparkCluster
from slaq.spark.engine import (
    TASK_LOG_FILE,
    EpochInfo,
    job_items,
    run_live,
)
from slaq.spark.procs import APP_JVM_FLAGS, JVM_FLAGS
from slaq.traces import ALLOCATION_SCHEMA, TRACE_SCHEMA, read_allocations, read_run, read_trace
from slaq.workload import parse_workload
from tests.conftest import driver_jvms, running
from tests.test_spark_cluster import is_loopback, listeners, wait_gone

TINY = {
    "name": "tiny",
    "jobs": [
        {"id": "a", "algorithm": "logreg", "dataset": "digits", "arrival_s": 0.0},
        {"id": "b", "algorithm": "svm", "dataset": "breast-cancer", "arrival_s": 0.5},
        {
            "id": "c",
            "algorithm": "kmeans",
            "dataset": "digits",
            "arrival_s": 1.5,
            "params": {"k": 5, "rows": 900},
        },
    ],
}


# A Newton-CG iteration is a gradient pass plus up to 20 Hessian-vector passes, each a Spark
# job of ~0.3-0.5 s here; a few logreg iterations exercise it, the other jobs give the length.
LOGREG_ITERATIONS = 3
# Iterations of the other jobs in the end-to-end runs.
TINY_ITERATIONS = 6


def tiny_iterations(job: dict, max_iter: int) -> int:
    """Iterations a tiny-workload job runs: ``max_iter``, logreg at most LOGREG_ITERATIONS."""
    return min(max_iter, LOGREG_ITERATIONS) if job["algorithm"] == "logreg" else max_iter


def tiny_workload(max_iter: int = TINY_ITERATIONS) -> object:
    """The 3-job workload, every job with tol 0 (so it runs all its iterations)."""
    jobs = [{**j, "max_iter": tiny_iterations(j, max_iter), "tol": 0.0} for j in TINY["jobs"]]
    return parse_workload({"name": TINY["name"], "jobs": jobs}, "<tiny>")


def leftovers(directory: Path) -> list[str]:
    """Temporary run directories left next to an output directory."""
    return sorted(
        p.name for p in directory.iterdir() if ".partial-" in p.name or ".scratch-" in p.name
    )


# --------------------------------------------------------------------------- no Spark needed


def test_job_items_subsample_is_seeded_windows():
    from slaq.blocks import BlockSet

    bs = BlockSet(Path("/nonexistent"), 4, 100, 3, (25, 25, 25, 25))
    assert job_items(bs, None, (0, 1)) == [(i, 0, 25) for i in range(4)]
    items = job_items(bs, 50, (0, 1))
    assert sum(b - a for _, a, b in items) == 50 and len(items) == 4
    assert all(0 <= a < b <= 25 for _, a, b in items)
    assert items == job_items(bs, 50, (0, 1))
    assert items != job_items(bs, 50, (0, 2))
    assert sum(b - a for _, a, b in job_items(bs, 3, (0, 1))) == 3


class _TooGreedy:
    name = "too-greedy"
    traits = PolicyTraits()

    def allocate(self, cluster, jobs):
        return {j.job_id: cluster.total_cores for j in jobs}


def _offline_driver(policy, cpu_budget=True):
    """The live driver with prepared job states but no Spark, to exercise one decision."""
    from slaq.blocks import BlockSet
    from slaq.jobstate import JobState
    from slaq.loop import DecisionStep
    from slaq.predict import RuntimeModel
    from slaq.spark.context import JobGate
    from slaq.spark.data import JobData
    from slaq.spark.driver import LiveDriver, LiveJob
    from slaq.spark.session import SparkSession

    cond = threading.Condition()
    bs = BlockSet(Path("/nonexistent"), 48, 4800, 2, (100,) * 48)
    data = JobData("d", "multiclass", bs, 3)
    jobs = {}
    for spec in tiny_workload().jobs:
        state = JobState(spec, RuntimeModel())
        state.start(0.0)
        gate = JobGate(cond=cond, budgeted=cpu_budget)
        jobs[spec.job_id] = LiveJob(spec, state, gate, data, job_items(bs, None, (0, 0)))
    driver = LiveDriver(
        jobs=jobs,
        spark=SparkSession(sc=None, app_id="offline", ui_url=None, owned=False),
        cond=cond,
        epoch_s=3.0,
        total_cores=8,
        run_id="offline",
        policy_name=policy.name,
        trainer_factory=lambda *a: None,
        physical_cores=2,
    )
    return DecisionStep(policy, "offline", 3.0), driver, list(jobs.values())


def _decide(step, driver, jobs, now, epoch):
    active = [j.state for j in jobs]
    with driver.lock():
        decision = step(active, 8, now, epoch)
        driver.apply(decision, active, tick=True, now=now)
    return decision


def test_scheduler_step_publishes_cores_and_budgets():
    step, driver, jobs = _offline_driver(load_policy("fair"))
    decision = _decide(step, driver, jobs, 0.0, 0)
    assert sum(decision.cores.values()) == 8
    assert [j.gate.cores for j in jobs] == [3, 3, 2]
    # budget = cores * epoch * physical / slots
    assert [j.gate.balance_s for j in jobs] == pytest.approx([2.25, 2.25, 1.5])
    assert len(step.allocations) == 3
    assert all(math.isnan(r.predicted_gain) for r in step.allocations)
    jobs[0].gate.balance_s = -1.0  # overspent: the debt carries into the next epoch
    jobs[1].gate.balance_s = 5.0  # unspent budget lapses
    _decide(step, driver, jobs, 3.0, 1)
    assert [j.gate.balance_s for j in jobs] == pytest.approx([1.25, 2.25, 1.5])
    assert len(step.decision_ms) == 2


def test_invalid_allocation_names_the_policy():
    step, driver, jobs = _offline_driver(_TooGreedy())
    with pytest.raises(PolicyError, match="too-greedy"):
        _decide(step, driver, jobs, 0.0, 0)


# --------------------------------------------------------------------------- live runs


def check_concurrency(run_dir: Path, native: bool) -> None:
    """Spark's own task records: no job ever ran more tasks at once than its allocation.

    Under Spark-native FAIR every iteration instead runs one task per block of the job.
    """
    tasks = pd.read_parquet(run_dir / TASK_LOG_FILE)
    trace = read_trace(run_dir)
    blocks = {job_id: info["blocks"] for job_id, info in read_run(run_dir)["jobs"].items()}
    tasks = tasks[tasks.job_id.isin(trace.job_id.unique())]
    assert len(tasks) > 0
    cores = {(r.job_id, f"{r.job_id} iteration {r.iteration}"): r.cores for r in trace.itertuples()}
    for (job_id, description), group in tasks.groupby(["job_id", "description"]):
        if (job_id, description) not in cores:  # a run-up call past the last iteration
            continue
        allowed = cores[(job_id, description)]
        for _, stage in group.groupby("stage_id"):
            start = stage.launch_s.to_numpy()
            end = start + stage.duration_s.to_numpy()
            # Spark's time stamps have millisecond resolution: touching intervals don't overlap.
            overlap = max(int(np.sum((start < s + 1e-3) & (end > s + 1e-3))) for s in start)
            if native:
                # one task per block (a trainer's set-up call reads block 0 only)
                assert len(stage) in (1, blocks[job_id]), (job_id, description, len(stage))
            else:
                assert len(stage) <= allowed, (job_id, description, len(stage), allowed)
                assert overlap <= allowed, (job_id, description, overlap, allowed)
    # Iterations of one job never overlap: at most one Spark job per pool at a time.
    for _, rows in trace.groupby("job_id"):
        rows = rows.sort_values("iteration")
        assert (rows.t_start_s.to_numpy()[1:] >= rows.t_end_s.to_numpy()[:-1] - 1e-6).all()


def run_tiny(cluster, tmp_path: Path, policy_name: str, sc=None) -> Path:
    """Run the 3-job workload under a policy, sampling listening sockets meanwhile."""
    seen: set[tuple[int, str, int]] = set()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.update(listeners([os.getpid(), *cluster.pids]))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    epochs: list[EpochInfo] = []
    out = tmp_path / "run"
    try:
        run_live(
            tiny_workload(),
            load_policy(policy_name),
            master_url=cluster.master_url,
            total_cores=cluster.total_cores,
            epoch_s=1.0,
            seed=3,
            out_dir=out,
            progress=False,
            webui_url=cluster.webui_url,
            task_log=True,
            max_time_s=240,
            on_epoch=epochs.append,
            spark_context=sc,
            auth_secret=cluster.secret,
            n_blocks=16,  # 4 x cores: native FAIR runs one task per block
        )
    finally:
        stop.set()
        sampler.join()
    assert leftovers(tmp_path) == []
    meta = read_run(out)
    assert meta["exit_status"] == "ok", meta["jobs"]
    assert meta["policy"] == policy_name and meta["mode"] == "live"
    assert meta["versions"]["java"] and meta["spark_master"] == cluster.master_url
    assert {j["status"] for j in meta["jobs"].values()} == {"finished"}
    for name, schema in (("trace", TRACE_SCHEMA), ("allocations", ALLOCATION_SCHEMA)):
        assert pq.read_schema(out / f"{name}.parquet").equals(schema, check_metadata=False)
    trace = read_trace(out)
    iterations = trace.groupby("job_id").iteration.max().to_dict()
    assert iterations == {k: v["iterations"] for k, v in meta["jobs"].items()}
    assert iterations["a"] == LOGREG_ITERATIONS and iterations["b"] == TINY_ITERATIONS
    assert 1 <= iterations["c"] <= TINY_ITERATIONS
    assert (trace.cpu_s > 0).all() and np.isfinite(trace.loss).all()
    allocs = read_allocations(out)
    assert (allocs.groupby("epoch").cores.sum() <= cluster.total_cores).all()
    assert len(epochs) > 0 and all(e.total_cores == 4 for e in epochs)
    check_concurrency(out, native=policy_name == "spark-fair")
    assert seen, "no listening sockets were sampled"
    exposed = sorted({(pid, ip, port) for pid, ip, port in seen if not is_loopback(ip)})
    assert not exposed, f"listeners on non-loopback addresses: {exposed}"
    return out


@pytest.mark.spark
def test_fair_end_to_end_with_its_own_spark_context(spark_cluster, tmp_path):
    run_tiny(spark_cluster, tmp_path, "fair")
    assert not driver_jvms(), "driver JVM left after the run"


@pytest.mark.spark
class TestOnASharedSparkContext:
    """Further policies reuse one SparkContext (the engine leaves a given context running)."""

    @pytest.mark.parametrize("policy_name", ["slaq", "spark-fair"])
    def test_end_to_end(self, spark_cluster, shared_sc, tmp_path, policy_name):
        out = run_tiny(spark_cluster, tmp_path, policy_name, shared_sc)
        assert read_run(out)["spark_context_shared"]

    def test_driver_and_executors_compile_early_and_daemons_do_not(self, spark_cluster, shared_sc):
        """The driver and executor JVMs get APP_JVM_FLAGS; the master and workers JVM_FLAGS."""
        jvms = {"driver": [], "executor": [], "daemon": []}
        for pid in driver_jvms():
            jvms["driver"].append(psutil.Process(pid).cmdline())
        for pid in spark_cluster.pids:
            daemon = psutil.Process(pid)
            jvms["daemon"].append(daemon.cmdline())
            for child in daemon.children(recursive=True):
                try:
                    cmdline = child.cmdline()
                except psutil.Error:  # e.g. a finished helper process, not yet reaped
                    continue
                if "org.apache.spark.executor.CoarseGrainedExecutorBackend" in cmdline:
                    jvms["executor"].append(cmdline)
        assert len(jvms["driver"]) == 1 and len(jvms["executor"]) == 2, jvms
        assert len(jvms["daemon"]) == 3, jvms
        for kind, cmdlines in jvms.items():
            flags = (JVM_FLAGS if kind == "daemon" else APP_JVM_FLAGS).split()
            for cmdline in cmdlines:
                assert all(flag in cmdline for flag in flags), (kind, cmdline)
                assert kind != "daemon" or not any("CompileThreshold" in a for a in cmdline)


ITERATIONS_PAST_KILL = 80


@pytest.mark.spark
def test_lost_worker_run_completes_with_complete_traces(tmp_path):
    """A worker SIGKILLed mid-run: the policy re-plans on the capacity left, every job finishes."""
    # One-pass-per-iteration jobs (a Newton-CG logreg iteration is ~20 Spark passes), long
    # enough to outlive the kill at epoch 3 (25 iterations once did; ~0.1 s each now do not).
    job = {"arrival_s": 0, "max_iter": ITERATIONS_PAST_KILL, "tol": 0.0}
    jobs = [
        {**job, "id": "a", "algorithm": "svm", "dataset": "breast-cancer"},
        {**job, "id": "b", "algorithm": "linreg", "dataset": "digits"},
    ]
    wl = parse_workload({"name": "lose-a-worker", "jobs": jobs}, "<lose>")
    out = tmp_path / "run"
    with LocalSparkCluster(workers=2, cores_per_worker=1, log_dir=tmp_path / "logs") as cluster:
        victim = cluster.worker_pids[1]
        family = [victim, *(p.pid for p in psutil.Process(victim).children(recursive=True))]

        def kill_once(info: EpochInfo) -> None:
            if info.epoch >= 3 and running(victim):  # a few seconds into the run
                family.extend(p.pid for p in psutil.Process(victim).children(recursive=True))
                os.kill(victim, signal.SIGKILL)

        run_live(
            wl,
            load_policy("fair"),
            master_url=cluster.master_url,
            total_cores=cluster.total_cores,
            epoch_s=1.0,
            seed=0,
            out_dir=out,
            progress=False,
            webui_url=cluster.webui_url,
            max_time_s=240,
            on_epoch=kill_once,
            auth_secret=cluster.secret,
        )
        assert not running(victim), "the worker was never killed: the test proved nothing"
        assert not wait_gone(family, 30), "processes of the killed worker survived"
        assert leftovers(tmp_path) == []
        pids = list(cluster.pids)
    meta = read_run(out)
    assert meta["exit_status"] == "ok", meta["jobs"]
    assert {j["status"] for j in meta["jobs"].values()} == {"finished"}
    assert [c for _, c in meta["capacity_changes"]][-1] == 1, meta["capacity_changes"]
    trace = read_trace(out)
    # Complete traces: every iteration of every job, once, with finite losses.
    for job_id in ("a", "b"):
        iterations = sorted(trace[trace.job_id == job_id].iteration)
        assert iterations == list(range(1, ITERATIONS_PAST_KILL + 1)), (job_id, iterations)
    assert np.isfinite(trace.loss).all() and (trace.cpu_s > 0).all()
    allocs = read_allocations(out)
    late = allocs[allocs.t_s > meta["capacity_changes"][-1][0]]
    assert len(late) > 0 and (late.groupby("epoch").cores.sum() <= 1).all()
    assert not driver_jvms()
    assert not wait_gone(pids, 5)
