"""The pipeline: a dry run of every config and of the README's overrides, and the smoke
pipeline end to end on tiny data (every figure and metric file, non-empty; nothing written
outside results/)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FIGURES = [
    "a_quality",
    "b_delay",
    "c_cores",
    "d_returns",
    "e_overhead",
    "f_prediction",
    "g_fidelity",
    "h_sweep",
]
POLICIES = {"slaq", "slaq-robust", "fair"}
POLICY_KEYS = {
    "quality_improvement",
    "delay_reduction",
    "mean_quality",
    "mean_delay_s",
    "decision_ms_p50",
    "decision_ms_p99",
}


def snakemake(
    workdir: Path, *extra: str, configfile: str | None = "smoke.yaml", env: dict | None = None
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
    ]
    if configfile:
        cmd += ["--configfile", str(REPO / "config" / configfile)]
    return subprocess.run(
        [*cmd, *extra], capture_output=True, text=True, timeout=900, env=env, cwd=workdir
    )


def dry_run(workdir: Path, *extra: str, **kw) -> str:
    run = snakemake(workdir, "--dry-run", *extra, **kw)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return run.stdout + run.stderr


def job_count(out: str, rule: str) -> int:
    """Count of a rule in Snakemake's job-stats table."""
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == rule and parts[1].isdigit():
            return int(parts[1])
    return 0


@pytest.mark.parametrize("configfile", [None, "config.yaml", "smoke.yaml", "paper.yaml"])
def test_dry_run_of_every_config(tmp_path, configfile):
    out = dry_run(tmp_path, configfile=configfile)
    assert job_count(out, "live_run") >= 4 and job_count(out, "sweep_cell") >= 24
    assert job_count(out, "figure") >= 7
    # Runs write under their config's results_dir only (never into paper-figures/).
    results = {None: "results/", "config.yaml": "results/"}.get(configfile)
    results = results or f"results/{configfile.removesuffix('.yaml')}/"
    outputs = [line.split(":", 1)[1] for line in out.splitlines() if "    output:" in line]
    paths = [p.strip() for line in outputs for p in line.split(",")]
    assert paths and all(p.startswith(results) for p in paths), sorted(set(paths))[:5]


def test_smoke_dry_run_is_what_the_smoke_config_says(tmp_path):
    out = dry_run(tmp_path)
    assert job_count(out, "live_run") == 2 * 2  # live.policies (slaq, fair) x 2 seeds
    assert job_count(out, "sweep_cell") == 2 * 2 * 3 * 2 + 2  # mixes x loads x policies x seeds
    assert "reference_figures" not in out


@pytest.mark.parametrize(
    "override, rule, count",
    [
        ("seeds=[0,1,2]", "live_run", 6),  # README: Snakemake hands these in as strings
        ("live={enabled: false}", "live_run", 0),  # a nested boolean
        ("sweep={enabled: false}", "sweep_cell", 0),
        ("sweep={loads: [0.5,1], headline_load: 1, ablation: {load: 1}}", "sweep_cell", 26),
    ],
)
def test_readme_config_overrides_pass_validation(tmp_path, override, rule, count):
    out = dry_run(tmp_path, "--config", override)
    assert job_count(out, rule) == count


def test_unknown_policy_and_dataset_fail_at_parse_time(tmp_path):
    for override, word in [
        ("policies={x: {spec: no-such-policy}}", "no-such-policy"),
        ("seeds=[a]", "'a' is not of type 'integer'"),
        ("live={workload: {templates: [{algorithm: logreg, dataset: nope}]}}", "nope"),
    ]:
        run = snakemake(tmp_path, "--dry-run", "--config", override)
        assert run.returncode != 0 and word in run.stdout + run.stderr


def test_plugin_policy_source_is_an_input_of_its_runs(tmp_path):
    plugin = tmp_path / "plug"
    plugin.mkdir()
    (plugin / "mypolicies.py").write_text(
        "from baselines.fair import FairPolicy as YoungestFirst\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{plugin}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = dry_run(
        tmp_path,
        "--config",
        'policies={mine: {spec: "mypolicies:YoungestFirst"}}',
        "live={policies: [mine, fair]}",
        env=env,
    )
    source = str(plugin / "mypolicies.py")
    inputs = [line for line in out.splitlines() if line.strip().startswith("input:")]
    using = [line for line in inputs if source in line]
    # 2 live runs, 2 replays and 2 mixes x 2 loads x 2 seeds sweep cells use it.
    assert len(using) == 2 + 2 + 8, out[-3000:]


@pytest.mark.spark
@pytest.mark.slow
def test_smoke_pipeline_end_to_end(tmp_path):
    data_dir = ("--config", f"data_dir={REPO / 'datasets' / 'cache'}")
    run = snakemake(tmp_path, *data_dir)
    assert run.returncode == 0, run.stderr[-4000:]
    results = tmp_path / "results" / "smoke"
    for fig in FIGURES:
        for suffix in (".png", ".pdf"):
            path = results / "figures" / f"{fig}{suffix}"
            assert path.stat().st_size > 1000, path
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    # Live: the policies of live.policies; simulated: every configured policy.
    expected = {"live": set(smoke["live"]["policies"]), "sim": POLICIES}
    assert expected["live"] < POLICIES  # the smoke config runs a subset live
    for mode, seeds in (("live", (0, 1)), ("sim", (0, 1))):
        for seed in seeds:
            metrics = json.loads((results / "metrics" / f"{mode}-{seed}.json").read_text())
            assert metrics["baseline"] == "fair"
            assert set(metrics["policies"]) == expected[mode], mode
            for entry in metrics["policies"].values():
                assert set(entry) >= POLICY_KEYS
                assert set(entry["delay_reduction"]) == {"80", "90", "95", "99"}
    sweep = json.loads((results / "sweep" / "sweep.json").read_text())
    assert {c["mix"] for c in sweep["cells"]} == {"smooth", "mixed"}
    for name in ("overhead.json", "prediction.json", "fidelity.json", "summary.md"):
        assert (results / name).stat().st_size > 100, name
    assert (results / "benchmarks" / "premise.json").stat().st_size > 100
    assert (results / "curves" / "library.parquet").stat().st_size > 1000
    # Everything under results/: the reference figures are only written on request.
    assert {p.name for p in tmp_path.iterdir()} <= {"results", ".snakemake"}
    # A second run finds nothing to do.
    again = snakemake(tmp_path, "--dry-run", *data_dir)  # the same config as the run
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
