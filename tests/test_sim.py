"""Simulator: determinism, epochs and iteration timing, failure handling, outputs."""

import math

import numpy as np
import pandas as pd
import pytest

from baselines.fair import FairPolicy
from slaq.policy import PolicyError, PolicyTraits
from slaq.scheduler import SlaqPolicy
from slaq.sim import (
    SimJob,
    run_simulation,
    sim_jobs_from_trace,
    sim_jobs_from_workload,
    simulate_to_dir,
    synthetic_curve,
)
from slaq.traces import read_run, read_trace
from slaq.workload import JobSpec, poisson_workload


def workload(n=12, seed=0):
    templates = [
        {
            "algorithm": "synthetic",
            "dataset": "synthetic",
            "curve": {"family": f},
            "max_iter": 40,
            "tol": 0.0,
            "work_s": w,
        }
        for f in ("sublinear", "exponential", "noisy", "plateau")
        for w in (1.0, 4.0)
    ]
    return poisson_workload(templates, n, 2.0, seed=seed)


def job(job_id, losses, arrival=0.0, work=1.0, overhead=0.0):
    spec = JobSpec(job_id, "synthetic", "synthetic", arrival, max_iter=len(losses), tol=0.0)
    return SimJob(spec, np.asarray(losses, float), work, overhead)


def test_simulation_is_deterministic_per_seed():
    runs = []
    for _ in range(2):
        jobs = sim_jobs_from_workload(workload(), seed=5)
        result = run_simulation(jobs, SlaqPolicy(), cores=16, epoch_s=3.0)
        runs.append(pd.DataFrame([r.__dict__ for r in result.trace]))
    pd.testing.assert_frame_equal(runs[0], runs[1])
    other = sim_jobs_from_workload(workload(), seed=6)
    assert not np.array_equal(other[0].losses, sim_jobs_from_workload(workload(), 5)[0].losses)


def test_iterations_follow_allocation_and_carry_over_epochs():
    # One job alone on 2 cores, 3 s of work per iteration: 1.5 s per iteration.
    result = run_simulation(
        [job("a", [5, 4, 3, 2, 1], work=3.0)], FairPolicy(), cores=2, epoch_s=2.0
    )
    ends = [r.t_end_s for r in result.trace]
    np.testing.assert_allclose(ends, [1.5, 3.0, 4.5, 6.0, 7.5])
    assert all(r.cores == 2 for r in result.trace)
    assert result.states["a"].status == "finished"


def test_arrivals_replan_at_once_or_wait_for_the_tick():
    jobs = [job("a", [2, 1], arrival=1.0)]
    at_once = run_simulation(jobs, FairPolicy(), cores=1, epoch_s=3.0, replan_on_events=True)
    assert at_once.trace[0].t_start_s == pytest.approx(1.0)
    assert at_once.trace[0].t_end_s == pytest.approx(2.0)
    ticks = run_simulation(jobs, FairPolicy(), cores=1, epoch_s=3.0, replan_on_events=False)
    assert ticks.trace[0].t_start_s == pytest.approx(3.0)
    assert ticks.trace[0].t_end_s == pytest.approx(4.0)


def test_freed_cores_go_out_when_a_job_ends_and_iterations_keep_their_cores():
    # b ends at t=1 (one 1-s iteration on 1 core); a (4 s of work) started on 1 core keeps it
    # for its running iteration, as a Spark job keeps its tasks, then runs on 2 cores at once.
    jobs = [job("a", [3, 2, 1], work=4.0), job("b", [2], work=1.0)]
    result = run_simulation(jobs, FairPolicy(), cores=2, epoch_s=10.0)
    a = [(r.t_start_s, r.t_end_s, r.cores) for r in result.trace if r.job_id == "a"]
    assert a == [(0.0, 4.0, 1), (4.0, 6.0, 2), (6.0, 8.0, 2)]
    epochs = [(row.t_s, row.job_id, row.cores) for row in result.allocations]
    assert (1.0, "a", 2) in epochs


def test_nan_loss_marks_the_job_failed_and_the_run_goes_on():
    jobs = [job("bad", [3.0, math.nan, 1.0]), job("good", [3.0, 2.0, 1.0])]
    result = run_simulation(jobs, FairPolicy(), cores=2, epoch_s=1.0)
    assert result.states["bad"].status == "failed"
    assert "not finite" in result.states["bad"].failure
    assert result.states["good"].status == "finished"
    assert [r.iteration for r in result.trace if r.job_id == "good"] == [1, 2, 3]


def test_invalid_policy_answer_stops_the_run_with_its_name():
    class Greedy:
        name = "greedy"
        traits = PolicyTraits()

        def allocate(self, cluster, jobs):
            return {j.job_id: cluster.total_cores for j in jobs}

    with pytest.raises(PolicyError, match="'greedy' allocated 4 cores"):
        run_simulation([job("a", [2, 1]), job("b", [2, 1])], Greedy(), cores=2, epoch_s=1.0)


def test_outputs_written_and_replayable(tmp_path):
    jobs = sim_jobs_from_workload(workload(6), seed=1)
    simulate_to_dir(jobs, FairPolicy(), cores=8, epoch_s=3.0, seed=1, out_dir=tmp_path / "r")
    trace = read_trace(tmp_path / "r")
    meta = read_run(tmp_path / "r")
    assert meta["exit_status"] == "ok" and set(meta["jobs"]) == {j.spec.job_id for j in jobs}
    assert trace.groupby("job_id").size().to_dict() == {j.spec.job_id: 40 for j in jobs}
    replay = sim_jobs_from_trace(trace)
    assert [j.spec.arrival_s for j in replay] == [j.spec.arrival_s for j in jobs]
    np.testing.assert_allclose(replay[0].losses, jobs[0].losses)


def test_synthetic_families_shapes():
    plateau = synthetic_curve({"family": "plateau", "plateau": 10}, 40, seed=0)
    assert np.ptp(plateau[:10]) < 1e-2 * plateau[0] and plateau[-1] < plateau[9] - 0.1
    noisy = synthetic_curve({"family": "noisy", "noise": 0.05}, 40, seed=0)
    assert np.any(np.diff(noisy) > 0)
    for fam in ("sublinear", "exponential"):
        assert np.all(np.diff(synthetic_curve({"family": fam}, 40, seed=0)) < 0)


def test_slaq_beats_fair_on_smooth_curves():
    from slaq.metrics import summarize

    templates = [
        {
            "algorithm": "synthetic",
            "dataset": "synthetic",
            "max_iter": 60,
            "tol": 0.0,
            "curve": {"family": f},
            "work_s": 2.0,
        }
        for f in ("sublinear", "exponential")
    ]
    # About 60% load: 2 s x 60 iterations every 3 s on 64 cores.
    jobs = sim_jobs_from_workload(poisson_workload(templates, 30, 3.0, seed=2), seed=2)
    traces = {}
    for policy in (FairPolicy(), SlaqPolicy(predictor="geometric")):
        result = run_simulation(jobs, policy, cores=64, epoch_s=3.0)
        traces[policy.name] = pd.DataFrame([r.__dict__ for r in result.trace])
    summary = summarize(traces, "fair")
    assert summary["policies"]["slaq"]["quality_improvement"] > 0.1
