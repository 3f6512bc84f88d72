"""Workload files: validation messages name file, job and field; arrivals are seeded."""

import numpy as np
import pytest
import yaml

from slaq.workload import (
    WorkloadError,
    load_workload,
    poisson_arrivals,
    poisson_workload,
    save_workload,
)

GOOD = {"algorithm": "logreg", "dataset": "digits", "arrival_s": 0.0}


def write(tmp_path, jobs):
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "jobs": jobs}))
    return path


@pytest.mark.parametrize(
    "job, match",
    [
        ({"id": "j1", "algorithm": "logreg", "arrival_s": 0}, "job 'j1': missing field.*dataset"),
        ({**GOOD, "id": "j2", "arrival_s": -1.0}, "job 'j2': field 'arrival_s'"),
        ({**GOOD, "id": "j3", "algorithm": "xgboost"}, "job 'j3': field 'algorithm'"),
        ({**GOOD, "id": "j4", "colour": 1}, "job 'j4': unknown field"),
    ],
)
def test_bad_jobs_name_file_job_and_field(tmp_path, job, match):
    path = write(tmp_path, [{**GOOD, "id": "ok"}, job])
    with pytest.raises(WorkloadError, match=match) as info:
        load_workload(path)
    assert str(path) in str(info.value)


def test_duplicate_ids_and_missing_file(tmp_path):
    with pytest.raises(WorkloadError, match="duplicate"):
        load_workload(write(tmp_path, [{**GOOD, "id": "a"}, {**GOOD, "id": "a"}]))
    with pytest.raises(WorkloadError, match="does not exist"):
        load_workload(tmp_path / "missing.yaml")


def test_round_trip_and_order(tmp_path):
    wl = poisson_workload([{**GOOD, "params": {"reg": 0.1}}], 5, 2.0, seed=3)
    path = tmp_path / "out.yaml"
    save_workload(wl, path)
    again = load_workload(path)
    assert again.jobs == wl.jobs
    assert [j.arrival_s for j in again.jobs] == sorted(j.arrival_s for j in again.jobs)


def test_poisson_arrivals_are_seeded_with_the_right_rate():
    a = poisson_arrivals(20000, 3.0, seed=7)
    np.testing.assert_array_equal(a, poisson_arrivals(20000, 3.0, seed=7))
    assert a[0] == 0.0
    assert np.mean(np.diff(a)) == pytest.approx(3.0, rel=0.03)
    assert not np.array_equal(a, poisson_arrivals(20000, 3.0, seed=8))
