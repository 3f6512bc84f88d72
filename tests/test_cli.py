"""The `slaq` command end to end on tiny inputs, including its error paths."""

import json

import yaml

from slaq.cli import main

CONFIG = {
    "name": "tiny",
    "simulation": {
        "n_jobs": 6,
        "mean_interarrival_s": 2.0,
        "templates": [
            {
                "algorithm": "synthetic",
                "dataset": "synthetic",
                "curve": {"family": "sublinear"},
                "max_iter": 15,
                "tol": 0.0,
                "work_s": 2.0,
            }
        ],
    },
}


def test_simulate_and_compare(tmp_path, caplog):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    wl = tmp_path / "w.yaml"
    assert main(["workload", "--config", str(cfg), "--key", "simulation", "--out", str(wl)]) == 0
    for policy in ("fair", "slaq"):
        args = [
            "simulate",
            "--workload",
            str(wl),
            "--policy",
            policy,
            "--cores",
            "8",
            "--epoch",
            "3",
            "--out",
            str(tmp_path / policy),
            "--quiet",
        ]
        assert main(args) == 0
    out = tmp_path / "m.json"
    assert main(["compare", str(tmp_path / "fair"), str(tmp_path / "slaq"), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics["policies"]) == {"fair", "slaq"}
    assert {"quality_improvement", "delay_reduction", "decision_ms_p50"} <= set(
        metrics["policies"]["slaq"]
    )


def test_unknown_policy_exits_2_with_the_known_names(tmp_path, caplog):
    wl = tmp_path / "w.yaml"
    wl.write_text(
        yaml.safe_dump(
            {
                "jobs": [
                    {
                        "id": 1,
                        "algorithm": "synthetic",
                        "dataset": "synthetic",
                        "arrival_s": 0,
                        "curve": {"family": "sublinear"},
                    }
                ]
            }
        )
    )
    code = main(
        [
            "simulate",
            "--workload",
            str(wl),
            "--policy",
            "nope",
            "--cores",
            "4",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert "known policies: fair, fifo" in caplog.text
    assert not (tmp_path / "o").exists()


def test_workload_without_curves_cannot_be_simulated(tmp_path, caplog):
    wl = tmp_path / "w.yaml"
    wl.write_text(
        yaml.safe_dump(
            {"jobs": [{"id": "a", "algorithm": "logreg", "dataset": "digits", "arrival_s": 0}]}
        )
    )
    code = main(
        [
            "simulate",
            "--workload",
            str(wl),
            "--policy",
            "fair",
            "--cores",
            "4",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "job 'a': field 'curve' is required" in caplog.text


def test_bench_overhead_small(tmp_path):
    out = tmp_path / "o.json"
    assert (
        main(
            [
                "bench",
                "overhead",
                "--jobs",
                "20",
                "--cores",
                "64,128",
                "--repeat",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads(out.read_text())["results"]
    assert len(rows) == 2 and all(r["same_allocation"] for r in rows)
