"""Regime figures, sweep cells and the sweep report on tiny workloads."""

import argparse
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from slaq import sim, sweep, sweep_cli
from slaq.policy import load_policy
from slaq.regime import regime_figures
from slaq.traces import TraceRow, read_run, write_run


def _library(path, n_templates=3, n_iter=20):
    """A fixture curve library in the long Parquet format of slaq.curves."""
    rows = []
    for t in range(n_templates):
        losses = 1.0 / (0.05 * (t + 1) * np.arange(1, n_iter + 1) + 1.0) + 0.1
        for i, loss in enumerate(losses):
            rows.append(
                {
                    "template_id": f"t{t}",
                    "algorithm": "logreg",
                    "dataset": "digits",
                    "params_json": "{}",
                    "iteration": i + 1,
                    "loss": float(loss),
                    "cpu_s": 0.5 * (t + 1),
                    "data_hash": "h",
                }
            )
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_regime_figures_of_a_tiny_workload():
    # Job a arrives at 0 and ends at 6 (two 3-s iterations), b arrives at 2 and ends at 8,
    # c arrives at 4 and ends at 16. Epoch 2 s, 2 cores, 30 one-core CPU seconds of work.
    rows = [("a", 0, 1, 3), ("a", 0, 2, 6), ("b", 2, 1, 5), ("b", 2, 2, 8), ("c", 4, 1, 16)]
    trace = pd.DataFrame(rows, columns=["job_id", "arrival_s", "iteration", "t_end_s"])
    trace["cpu_s"] = 6.0
    r = regime_figures(trace, epoch_s=2.0, cores=2)
    assert r["median_epochs"] == 3.0  # lives 6, 6, 12 s -> median 6 s = 3 epochs
    assert r["mean_active_jobs"] == pytest.approx(24.0 / 16.0)  # 24 job-seconds over [0, 16]
    assert r["offered_load"] == pytest.approx(30.0 / (2 * 4.0))  # arrival span 4 s
    assert r["median_iterations"] == 2 and not r["paper_regime"]
    assert regime_figures(trace, epoch_s=2.0, cores=2, work_cpu_s=8.0)["offered_load"] == 1.0


def _row(job, it, start, end, cores, cpu):
    return TraceRow("r", "fair", job, "logreg", "d", 0.0, it, start, end, cores, cpu, 1.0, 1.0)


def test_fixed_cost_is_the_median_wall_beyond_cpu_per_core(tmp_path):
    # wall - cpu/cores: 1.0 - 2/4 = 0.5, 0.7 - 1/2 = 0.2, 2.0 - 6/4 = 0.5 -> median 0.5.
    rows = [_row("a", 1, 0, 1.0, 4, 2.0), _row("a", 2, 1, 1.7, 2, 1.0), _row("b", 1, 0, 2, 4, 6)]
    write_run(tmp_path / "live", rows, [], {"policy": "fair"})
    assert sweep.fixed_cost_from_runs([tmp_path / "live"]) == pytest.approx(0.5)


def test_draw_jobs_exact_load_mixes_and_seeds(tmp_path):
    lib = sweep.load_library(_library(tmp_path / "lib.parquet"))
    assert [c.cpu_s_per_iter for c in lib] == [0.5, 1.0, 1.5]
    kw = dict(load=0.8, cores=8, n_jobs=20, work_scale=2.0, fixed_cost_s=0.3)
    smooth = sweep.draw_jobs(lib, mix="smooth", seed=1, **kw)
    work = sum(j.work_s * j.losses.size for j in smooth)
    span = smooth[-1].spec.arrival_s - smooth[0].spec.arrival_s
    assert work / (8 * span) == pytest.approx(0.8)  # offered load exactly as asked
    assert all(j.overhead_s == 0.3 for j in smooth)
    mixed = sweep.draw_jobs(lib, mix="mixed", seed=1, **kw)
    kinds = [j.spec.params["curve"] for j in mixed]
    assert (kinds.count("noisy"), kinds.count("plateau")) == (4, 2)
    for job in mixed:
        if job.spec.params["curve"] == "plateau":
            assert job.losses.size > 20 and job.spec.max_iter == job.losses.size
    again = sweep.draw_jobs(lib, mix="mixed", seed=1, **kw)
    assert all(np.array_equal(a.losses, b.losses) for a, b in zip(mixed, again, strict=True))
    with pytest.raises(ValueError, match="unknown mix"):
        sweep.draw_jobs(lib, mix="spiky", seed=1, **kw)


def test_max_cores_caps_every_job_in_the_simulation(tmp_path):
    """A job's partitions bound its cores: with 2 jobs on 8 cores and a cap of 3, fair gives 3
    each (6 of 8 used), not 4 each (hand-computed)."""
    lib = sweep.load_library(_library(tmp_path / "lib.parquet", n_templates=1))
    kw = dict(mix="smooth", load=0.5, seed=0, cores=8, n_jobs=2, work_scale=1.0)
    jobs = sweep.draw_jobs(lib, fixed_cost_s=0.0, max_cores=3, **kw)
    assert [j.max_cores for j in jobs] == [3, 3]
    both = [dataclasses.replace(j, spec=dataclasses.replace(j.spec, arrival_s=0.0)) for j in jobs]
    result = sim.run_simulation(both, load_policy("fair"), cores=8, epoch_s=1.0)
    assert {(a.job_id, a.cores) for a in result.allocations if a.t_s == 0.0} == {
        (both[0].spec.job_id, 3),
        (both[1].spec.job_id, 3),
    }
    with pytest.raises(ValueError, match="max_cores"):
        sweep.draw_jobs(lib, fixed_cost_s=0.0, max_cores=0, **kw)


def _parser():
    parser = argparse.ArgumentParser()
    sweep_cli.add_subcommands(parser.add_subparsers(dest="command"))
    return parser


def test_cells_and_report_group_by_policy_and_arguments(tmp_path):
    lib = _library(tmp_path / "lib.parquet")
    base = ["sweep", "cell", "--library", str(lib), "--mix", "smooth", "--load", "1.0"]
    base += ["--cores", "8", "--n-jobs", "4", "--epoch-s", "1", "--fixed-cost-s", "0.1"]
    runs = []
    for seed in (0, 1):
        for policy in (["fair"], ["slaq", "--policy-arg", "min_cores=1"]):
            out = tmp_path / f"{policy[0]}-{seed}"
            extra = ["--seed", str(seed), "--out", str(out), "--policy", *policy]
            args = _parser().parse_args(base + extra)
            assert args.func(args) == 0
            runs.append(out)
    meta = read_run(runs[1])
    assert meta["sweep"]["label"] == "slaq[min_cores=1]" and meta["fixed_cost_s"] == 0.1
    assert meta["sweep"]["work_scale"] == pytest.approx(0.05 * 8 / 1.0)  # auto: median cpu 1 s
    assert meta["regime"]["offered_load"] == pytest.approx(1.0)
    out = tmp_path / "sweep.json"
    args = _parser().parse_args(["sweep", "report", "--runs", *map(str, runs), "--out", str(out)])
    assert args.func(args) == 0
    rep = json.loads(out.read_text())
    cells = {c["policy"]: c for c in rep["cells"]}
    assert set(cells) == {"fair", "slaq[min_cores=1]"}
    assert cells["fair"]["n_seeds"] == 2 and cells["fair"]["seeds"] == [0, 1]
    q = [r["quality_improvement"] for r in rep["per_seed"] if r["policy"] != "fair"]
    assert cells["slaq[min_cores=1]"]["metrics"]["quality_improvement"]["mean"] == (
        pytest.approx(np.mean(q))
    )
    assert rep["regime"][0]["n_seeds"] == 2 and rep["regime"][0]["policy"] == "fair"
    assert rep["up_to"]["smooth"]["slaq[min_cores=1]"]["quality_improvement"]["load"] == 1.0


def test_seeds_compare_and_out_of_sample_fidelity(tmp_path):
    from slaq.fidelity import calibrate, fidelity_out_of_sample
    from slaq.metrics import compare_seeds

    lib = sweep.load_library(_library(tmp_path / "lib.parquet"))
    runs = {}
    for seed in (0, 1):
        jobs = sweep.draw_jobs(lib, mix="smooth", load=1.0, seed=seed, cores=8, n_jobs=4,
                               work_scale=2.0, fixed_cost_s=0.2)  # fmt: skip
        for name in ("fair", "slaq"):
            out = tmp_path / f"{name}-{seed}"
            # The geometric predictor keeps the test fast; the calibration replays the args.
            args = {"predictor": "geometric"} if name == "slaq" else {}
            config = {"policy": name, "policy_args": args, "epoch_s": 1.0}
            sim.simulate_to_dir(jobs, load_policy(name, **args), cores=8, epoch_s=1.0, seed=seed,
                                out_dir=out, config=config)  # fmt: skip
            runs[name, seed] = out
    seeds = compare_seeds(list(runs.values()))
    assert seeds["seeds"] == [0, 1] and seeds["statistics"]["n_seeds"] == 2
    q = [seeds["per_seed"][s]["policies"]["slaq"]["quality_improvement"] for s in ("0", "1")]
    stat = seeds["statistics"]["policies"]["slaq"]["quality_improvement"]
    assert stat["mean"] == pytest.approx(np.mean(q)) and stat["min"] == min(q)
    cal_dirs = [runs["fair", 0], runs["slaq", 0]]
    cal = calibrate(cal_dirs)
    trace = pd.concat([pd.read_parquet(d / "trace.parquet") for d in cal_dirs])
    assert cal["fixed_cost_s"] == sweep.fixed_cost_from_runs(cal_dirs)
    assert cal["work_s"]["logreg/digits"] == pytest.approx(trace["cpu_s"].median())
    res = fidelity_out_of_sample(cal_dirs, [runs["fair", 1], runs["slaq", 1]])
    assert [(r["policy"], r["seed"]) for r in res["runs"]] == [("fair", 1), ("slaq", 1)]
    assert [i["policy"] for i in res["improvements"]] == ["slaq"]
    assert all(np.isfinite(v) for v in res["errors"].values())
