"""The epoch and prediction benchmarks: structure, counts and bad input (timings not asserted)."""

import json

import numpy as np
import pandas as pd
import pytest

from slaq.bench_epoch import check_sizes, epoch_benchmark
from slaq.bench_prediction import HELD_OUT, PREDICTORS, prediction_benchmark, recorded_curves
from slaq.cli import main


def test_epoch_benchmark_reports_every_part_beside_the_reference():
    out = epoch_benchmark([12], [16, 64], repeat=2, reference_jobs=4, reference_repeat=1)
    rows = out["results"]
    variants = [("curvefit", "all"), ("curvefit", "scheduled"), ("geometric", "all")]
    assert sorted((r["predictor"], r["refit"], r["cores"]) for r in rows) == sorted(
        (p, refit, c) for p, refit in variants for c in (16, 64)
    )
    for row in rows:
        for part in ("fit_ms", "snapshot_ms", "allocate_ms", "epoch_ms", "epoch_cpu_ms"):
            assert row[part]["p99"] >= row[part]["p50"] > 0
        assert row["reference_epoch_ms"] > row["reference_fit_ms"] > 0
        assert row["speedup_p50"] == pytest.approx(
            row["reference_epoch_ms"] / row["epoch_ms"]["p50"]
        )
    assert out["reference"]["jobs_measured"] == 4


def test_prediction_benchmark_counts_curves_per_cell(tmp_path):
    library = tmp_path / "library.parquet"
    k = np.arange(1, 31)
    pd.DataFrame(
        {
            "template_id": np.repeat(["a", "b", "c"], k.size),
            "iteration": np.tile(k, 3),
            "loss": np.concatenate([1 / k, 2 / k + 0.1, 0.5**k + 1]),
        }
    ).to_parquet(library)
    out = prediction_benchmark(jobs_per_family=2, length=30, library=library)
    assert set(out["groups"]) == {"library"} | {f"held-out {f}" for f in HELD_OUT}
    for group, table in out["groups"].items():
        assert set(table) == set(PREDICTORS)
        want = 3 if group == "library" else 2
        for cells in table.values():
            assert [cells[h]["curves"] for h in ("1", "5", "10", "20")] == [want] * 4
            assert cells["20"]["points"] < cells["1"]["points"]
    assert out["all"]["geometric"]["1"]["curves"] == 3 + 2 * len(HELD_OUT)
    assert set(out["batched_within_10pct_of_scipy"]) == {
        "curvefit-batched",
        "curvefit-batched-warm",
        "curvefit-loop",
    }


def test_recorded_curves_group_by_algorithm(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame(
        {
            "algorithm": ["svm"] * 3 + ["logreg"] * 2,
            "job_id": ["a"] * 3 + ["b"] * 2,
            "iteration": [2, 1, 3, 1, 2],
            "loss": [0.5, 1.0, 0.25, 3.0, 2.0],
        }
    ).to_parquet(run / "trace.parquet")
    groups = recorded_curves([run], None)
    np.testing.assert_array_equal(groups["live svm"][f"{run}:a"], [1.0, 0.5, 0.25])
    assert list(groups["live logreg"][f"{run}:b"]) == [3.0, 2.0]


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"jobs": [100, 0]}, "--jobs must be positive integers, got [100, 0]"),
        ({"cores": []}, "--cores must be positive integers"),
        ({"repeat": 0}, "--repeat must be a positive integer, got 0"),
        ({"reference_jobs": -3}, "--reference-jobs must be a positive integer"),
    ],
)
def test_check_sizes_rejects(sizes, message):
    with pytest.raises(ValueError) as err:
        check_sizes(**sizes)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["epoch", "--jobs", "0"], "--jobs must be positive integers"),
        (["epoch", "--cores", "64,-1"], "--cores must be positive integers"),
        (["epoch", "--repeat", "0"], "--repeat must be a positive integer"),
        (["prediction", "--repeat", "0"], "--repeat must be a positive integer"),
        (["overhead", "--jobs", "-4"], "--jobs"),
        (["prediction", "--trace", "EMPTY"], "no trace.parquet"),
        (["prediction", "--library", "MISSING"], "does not exist"),
    ],
)
def test_bad_bench_input_is_one_line_exit_2_and_no_file(tmp_path, caplog, argv, message):
    (tmp_path / "EMPTY").mkdir()
    argv = [str(tmp_path / a) if a in ("EMPTY", "MISSING") else a for a in argv]
    out = tmp_path / "out.json"
    assert main(["bench", *argv, "--live-root", str(tmp_path), "--out", str(out)]) == 2
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0].getMessage()
    assert "\n" not in errors[0].getMessage() and errors[0].exc_info is None
    assert not out.exists()


def test_bench_epoch_cli_writes_json(tmp_path):
    out = tmp_path / "epoch.json"
    argv = ["bench", "epoch", "--jobs", "8", "--cores", "32", "--repeat", "2"]
    assert main([*argv, "--reference-jobs", "2", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "epoch" and len(data["results"]) == 3
