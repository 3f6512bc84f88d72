"""The `slaq` command end to end on tiny inputs, including its error paths."""

import json
import signal
import subprocess
import sys
import time

import pytest
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


# --------------------------------------------------------------------------- bad input


JOB = {
    "id": "a",
    "algorithm": "synthetic",
    "dataset": "synthetic",
    "arrival_s": 0,
    "curve": {"family": "sublinear"},
    "max_iter": 5,
}


def _workload(tmp_path, text=None):
    wl = tmp_path / "w.yaml"
    wl.write_text(yaml.safe_dump({"jobs": [JOB]}) if text is None else text)
    return wl


def _simulate(wl, out, *extra):
    return ["simulate", "--workload", str(wl), "--policy", "fair", "--cores", "4"] + [
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def _one_line_error(capsys, caplog, code, expected):
    """Exit 2, one ERROR line containing ``expected``, no traceback."""
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert code == 2, caplog.text
    assert len(errors) == 1 and "\n" not in errors[0].getMessage(), caplog.text
    assert expected in errors[0].getMessage()
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--repeat", "0"], "--repeat must be at least 1"),
        (["--jobs", "0"], "--jobs needs integers of at least 1"),
        (["--cores", "0,64"], "--cores needs integers of at least 1"),
    ],
)
def test_bench_overhead_rejects_zero(tmp_path, capsys, caplog, flags, expected):
    out = tmp_path / "o.json"
    code = main(["bench", "overhead", "--jobs", "5", "--cores", "8", *flags, "--out", str(out)])
    _one_line_error(capsys, caplog, code, expected)
    assert not out.exists()


def test_simulate_n_jobs_zero(tmp_path, capsys, caplog):
    out = tmp_path / "o"
    code = main(_simulate(_workload(tmp_path), out, "--n-jobs", "0"))
    _one_line_error(capsys, caplog, code, "--n-jobs must be at least 1")
    assert not out.exists()


def test_out_naming_an_existing_file(tmp_path, capsys, caplog):
    out = tmp_path / "o"
    out.write_text("mine")
    code = main(_simulate(_workload(tmp_path), out))
    _one_line_error(capsys, caplog, code, "exists and is not a directory")
    assert out.read_text() == "mine"


def test_out_into_a_directory_that_is_not_a_run(tmp_path, capsys, caplog):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code = main(_simulate(_workload(tmp_path), out))
    _one_line_error(capsys, caplog, code, "not a run directory")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_out_into_a_previous_run_is_replaced(tmp_path):
    out = tmp_path / "o"
    assert main(_simulate(_workload(tmp_path), out)) == 0
    assert main(_simulate(_workload(tmp_path), out, "--seed", "1")) == 0
    assert json.loads((out / "run.json").read_text())["seed"] == 1


def test_malformed_yaml_names_file_and_line(tmp_path, capsys, caplog):
    wl = _workload(tmp_path, "jobs:\n  - id: a\n    algorithm: [synthetic\n")
    code = main(_simulate(wl, tmp_path / "o"))
    _one_line_error(capsys, caplog, code, f"{wl}: not valid YAML at line 4")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text", ["", "name: x\n", "jobs: []\n"])
def test_empty_workload_is_a_clear_error(tmp_path, capsys, caplog, text):
    wl = _workload(tmp_path, text)
    code = main(_simulate(wl, tmp_path / "o"))
    _one_line_error(capsys, caplog, code, "the workload has no jobs")


def test_failed_runs_are_refused_by_compare_and_replay(tmp_path, capsys, caplog):
    wl = _workload(tmp_path)
    for name in ("fair", "failed"):
        assert main(_simulate(wl, tmp_path / name)) == 0
    meta_path = tmp_path / "failed" / "run.json"
    meta = json.loads(meta_path.read_text())
    meta["exit_status"] = "1 jobs failed"
    meta_path.write_text(json.dumps(meta))
    caplog.clear()
    out = tmp_path / "m.json"
    code = main(["compare", str(tmp_path / "fair"), str(tmp_path / "failed"), "--out", str(out)])
    _one_line_error(capsys, caplog, code, "is a failed run (exit_status '1 jobs failed')")
    assert not out.exists()
    caplog.clear()
    replay = ["simulate", "--trace", str(tmp_path / "failed"), "--policy", "fair"]
    code = main([*replay, "--out", str(tmp_path / "r"), "--quiet"])
    _one_line_error(capsys, caplog, code, "is a failed run")
    assert not (tmp_path / "r").exists()


def test_run_rejects_unknown_dataset_and_policy_before_any_cluster(tmp_path, capsys, caplog):
    wl = tmp_path / "w.yaml"
    job = {"id": "a", "algorithm": "logreg", "dataset": "digitz", "arrival_s": 0}
    wl.write_text(yaml.safe_dump({"jobs": [job]}))
    out = tmp_path / "o"
    run = ["run", "--workload", str(wl), "--out", str(out), "--quiet"]
    t0 = time.monotonic()
    code = main([*run, "--policy", "fair"])
    _one_line_error(capsys, caplog, code, "unknown dataset 'digitz'")
    job["dataset"] = "digits"
    wl.write_text(yaml.safe_dump({"jobs": [job]}))
    caplog.clear()
    code = main([*run, "--policy", "nope"])
    _one_line_error(capsys, caplog, code, "nope")
    # Well under a cluster's start-up (about 13 s), and nothing written or started.
    assert time.monotonic() - t0 < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.yaml"]


SIM_SCRIPT = """
import sys
from slaq.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigint_during_simulate_exits_130_cleanly(tmp_path):
    """Ctrl-C mid-simulation: a one-line message, exit 130, no traceback, no output."""
    long = {**JOB, "max_iter": 10**6, "tol": 0.0}
    jobs = [{**long, "id": f"j{i}", "arrival_s": i} for i in range(50)]
    wl = _workload(tmp_path, yaml.safe_dump({"jobs": jobs}))
    out = tmp_path / "o"
    cmd = [sys.executable, "-c", SIM_SCRIPT, *_simulate(wl, out)]
    cmd.remove("--quiet")  # the progress bar on stderr says the simulation is running
    # A shell that starts pytest in the background hands it SIGINT ignored, and the child would
    # inherit that (Python then installs no Ctrl-C handler): give it the default disposition,
    # as a terminal's foreground process has.
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = ""
    try:
        while "jobs finished" not in seen:
            char = proc.stderr.read(1)
            assert char, f"simulate ended before its progress bar: {seen[-2000:]}"
            seen += char
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = seen + rest
    assert proc.returncode == 130, text[-2000:]
    assert "Traceback" not in text
    assert "interrupted by SIGINT" in text
    assert not out.exists()


def test_slaq_run_exit_status_follows_run_json(tmp_path, caplog):
    """A live run with a failed job exits 1 and says so; its directory stays for inspection."""
    from slaq.spark.cli import _exit_status

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"exit_status": "1 jobs failed"}))
    assert _exit_status(run) == 1
    assert "run FAILED (1 jobs failed)" in caplog.text and run.exists()
    (run / "run.json").write_text(json.dumps({"exit_status": "ok"}))
    assert _exit_status(run) == 0
