"""The smoke pipeline end to end on tiny data: every figure and metric file, non-empty."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIGURES = [
    "a_quality",
    "b_delay",
    "c_cores",
    "d_returns",
    "e_overhead",
    "f_prediction",
    "g_fidelity",
]
POLICY_KEYS = {
    "quality_improvement",
    "peak_quality_improvement",
    "delay_reduction",
    "mean_quality",
    "mean_delay_s",
    "decision_ms_p50",
    "decision_ms_p99",
}


def snakemake(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(REPO / "config" / "smoke.yaml"),
        "--config",
        f"data_dir={REPO / 'datasets' / 'cache'}",
        "--cores",
        "2",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.mark.spark
@pytest.mark.slow
def test_smoke_pipeline_end_to_end(tmp_path):
    run = snakemake(tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    results = tmp_path / "results" / "smoke"
    for fig in FIGURES:
        for suffix in (".png", ".pdf"):
            path = results / "figures" / f"{fig}{suffix}"
            assert path.stat().st_size > 1000, path
    for mode in ("live", "sim"):
        metrics = json.loads((results / "metrics" / f"{mode}-0.json").read_text())
        assert metrics["baseline"] == "fair"
        assert set(metrics["policies"]) == {"slaq", "fair"}
        for entry in metrics["policies"].values():
            assert set(entry) >= POLICY_KEYS
            assert set(entry["delay_reduction"]) == {"80", "90", "95", "99"}
    for name in ("overhead.json", "prediction.json", "summary.md"):
        assert (results / name).stat().st_size > 100
    for policy in ("slaq", "fair"):
        fid = json.loads((results / "fidelity" / f"{policy}-0.json").read_text())
        assert 0 <= fid["mad_quality"] <= 1
    summary = (results / "summary.md").read_text()
    assert "Live on Spark" in summary and "73%" in summary
    # A second run finds nothing to do.
    again = snakemake(tmp_path, "--dry-run")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
