"""One loop, two drivers: the simulator, fed a live run's measured iteration times, makes the
same decisions as the live run did, up to timing noise (docs/design.md §2)."""

import pandas as pd
import pytest

from slaq.policy import load_policy
from slaq.sim import run_simulation, sim_jobs_from_trace
from slaq.spark.engine import run_live
from slaq.traces import read_allocations, read_run, read_trace
from slaq.workload import parse_workload
from tests.test_spark_engine import TINY

# Share of the live run's decisions the replay must match: live iteration times scatter
# around the medians the replay uses, so an arrival or a job end near another event can
# swap order, but the decisions must agree almost everywhere.
AGREEMENT = 0.8


def staggered_workload():
    """The 3-job tiny workload with arrivals 4 s apart, 12 iterations each."""
    jobs = [
        {**j, "arrival_s": 4.0 * i, "max_iter": 12, "tol": 0.0} for i, j in enumerate(TINY["jobs"])
    ]
    return parse_workload({"name": "staggered", "jobs": jobs}, "<staggered>")


def decisions(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per decision: its time, active jobs and allocation."""
    rows = []
    for epoch, group in frame.sort_values(["epoch", "job_id"]).groupby("epoch", sort=True):
        rows.append(
            {
                "epoch": epoch,
                "t_s": float(group.t_s.iloc[0]),
                "active": frozenset(group.job_id),
                "cores": tuple(zip(group.job_id, group.cores, strict=True)),
            }
        )
    return pd.DataFrame(rows)


def agreement(live: pd.DataFrame, sim: pd.DataFrame, column: str) -> float:
    """Share of live decisions equal to the replay's decision in force at the same time."""
    sim = sim.sort_values("t_s")
    matched = 0
    for row in live.itertuples():
        earlier = sim[sim.t_s <= row.t_s + 1e-9]
        if len(earlier) and earlier.iloc[-1][column] == getattr(row, column):
            matched += 1
    return matched / len(live)


@pytest.mark.spark
class TestOneLoopTwoDrivers:
    @pytest.mark.parametrize("policy_name", ["fair", "slaq"])
    def test_replay_makes_the_same_decisions(self, spark_cluster, shared_sc, tmp_path, policy_name):
        out = tmp_path / "live"
        run_live(
            staggered_workload(),
            load_policy(policy_name),
            master_url=spark_cluster.master_url,
            total_cores=spark_cluster.total_cores,
            epoch_s=1.0,
            seed=3,
            out_dir=out,
            progress=False,
            max_time_s=240,
            spark_context=shared_sc,
            n_blocks=16,
        )
        meta = read_run(out)
        jobs = sim_jobs_from_trace(read_trace(out), meta["jobs"])
        sim = run_simulation(jobs, load_policy(policy_name), cores=meta["cores"], epoch_s=1.0)
        live_d = decisions(read_allocations(out))
        sim_d = decisions(pd.DataFrame([a.__dict__ for a in sim.allocations]))
        # Each job lives about as long in the replay (timing noise of a shared machine).
        for job_id, info in meta["jobs"].items():
            live_life = info["finished_s"] - info["started_s"]
            state = sim.states[job_id]
            assert state.finished_s - state.started_s == pytest.approx(
                live_life, rel=0.35, abs=2.0
            ), job_id
        assert agreement(live_d, sim_d, "active") >= AGREEMENT, (live_d, sim_d)
        if policy_name == "fair":
            # Fair shares depend only on the active set: the allocations agree as well.
            assert agreement(live_d, sim_d, "cores") >= AGREEMENT, (live_d, sim_d)
