"""A live run rejects bad data and parameters before any Spark work, naming job and field."""

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from slaq.policy import load_policy
from slaq.spark.engine import LiveRun
from slaq.workload import parse_workload


def live_run(tmp_path: Path, X: np.ndarray, y: np.ndarray, params: dict) -> LiveRun:
    """A LiveRun whose only dataset is (X, y); nothing here starts Spark."""
    workload = parse_workload(
        {
            "jobs": [
                {
                    "id": "j1",
                    "algorithm": "logreg",
                    "dataset": "d",
                    "arrival_s": 0.0,
                    "params": params,
                }
            ]
        },
        "<t>",
    )
    data = SimpleNamespace(X=X, y=y, task="multiclass")
    return LiveRun(
        workload,
        load_policy("fair"),
        "spark://127.0.0.1:1",
        4,
        1.0,
        0,
        tmp_path / "out",
        dataset_loader=lambda name: data,
        progress=False,
    )


def prepare(run: LiveRun, tmp_path: Path):
    return run._prepare_jobs(tmp_path / "blocks", threading.Condition())


def test_nan_in_the_data_names_the_job_before_spark(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = rng.integers(0, 3, size=200)
    X[17, 3] = np.nan
    with pytest.raises(ValueError, match=r"job 'j1'.*(NaN|nan|finite)"):
        prepare(live_run(tmp_path, X, y, {}), tmp_path)


def test_negative_reg_names_the_job_and_field(tmp_path):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(200, 5)), rng.integers(0, 3, size=200)
    with pytest.raises(ValueError, match=r"j1.*reg"):
        prepare(live_run(tmp_path, X, y, {"reg": -1.0}), tmp_path)


def test_good_data_prepares_every_job(tmp_path):
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(200, 5)), rng.integers(0, 3, size=200)
    jobs = prepare(live_run(tmp_path, X, y, {"reg": 1e-3}), tmp_path)
    assert list(jobs) == ["j1"] and jobs["j1"].state.max_cores == len(jobs["j1"].items)
