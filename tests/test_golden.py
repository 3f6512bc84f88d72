"""Every registered policy on a tiny workload against committed allocations and metrics.

The expected files live in tests/golden/<policy>.json. After an intended change of behaviour,
regenerate them with one command and review the diff:

    SLAQ_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py

The workload is synthetic and seeded; the simulator is deterministic, so any difference is a
change in what a policy decides (or in the loop that feeds it).
"""

import json
import os
from pathlib import Path

import pytest

from slaq.policy import available_policies, load_policy
from slaq.sim import run_simulation, sim_jobs_from_workload
from slaq.workload import poisson_workload

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("SLAQ_REGENERATE_GOLDEN") == "1"
TEMPLATES = [
    {
        "algorithm": "synthetic",
        "dataset": "synthetic",
        "max_iter": 25,
        "tol": 0.0,
        "work_s": work,
        "curve": {"family": family, "overhead_s": 0.2},
    }
    for family in ("sublinear", "exponential", "noisy", "plateau")
    for work in (2.0, 6.0)
]


def outcome(policy_name: str) -> dict:
    """Allocations (epoch, time, job, cores) and per-job completion times under a policy."""
    jobs = sim_jobs_from_workload(poisson_workload(TEMPLATES, 8, 4.0, seed=11), seed=11)
    result = run_simulation(jobs, load_policy(policy_name), cores=12, epoch_s=3.0)
    allocations = [[a.epoch, round(a.t_s, 6), a.job_id, a.cores] for a in result.allocations]
    completion = {
        job_id: round(state.finished_s - state.spec.arrival_s, 6)
        for job_id, state in sorted(result.states.items())
    }
    return {
        "allocations": allocations,
        "completion_s": completion,
        "mean_completion_s": round(sum(completion.values()) / len(completion), 6),
        "iterations": len(result.trace),
    }


@pytest.mark.parametrize("policy_name", available_policies())
def test_policy_matches_its_golden_file(policy_name):
    path = GOLDEN / f"{policy_name}.json"
    got = outcome(policy_name)
    if REGENERATE:
        path.write_text(json.dumps(got, indent=1) + "\n")
    assert path.exists(), f"no golden file for {policy_name}; regenerate (see module docstring)"
    expected = json.loads(path.read_text())
    assert got["allocations"] == expected["allocations"]
    assert got["completion_s"] == pytest.approx(expected["completion_s"], abs=1e-6)
    assert got["iterations"] == expected["iterations"]


def test_golden_policies_differ():
    """The fixture must be able to tell policies apart, or the golden files prove nothing."""
    runs = {name: outcome(name)["allocations"] for name in ("slaq", "fair", "fifo")}
    assert runs["slaq"] != runs["fair"] != runs["fifo"]
