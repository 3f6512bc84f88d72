"""Simulator fidelity out of sample (issue 15, item 6; docs/design.md §2 "One loop, two drivers").

The simulator is calibrated on some live runs (the seed-0 runs): Spark's fixed cost per
iteration (slaq.sweep.fixed_cost_from_runs) and the one-core CPU seconds per iteration of each
job kind (``algorithm/dataset``, median task CPU time). It then predicts other live runs (other
seeds) from their workloads alone: arrivals and loss per iteration come from the predicted
run, costs only from the calibration. Nothing of a predicted run's timing enters its
prediction, so the errors below are out of sample, unlike a replay of the same run.

JSON written by ``slaq fidelity --calibrate ... --predict ...``::

    {"baseline": str,
     "calibration": {"runs": [str], "fixed_cost_s": float, "work_s": {kind: float},
                     "work_s_default": float},
     "runs": [{"run_dir", "policy", "seed", "live_mean_quality", "sim_mean_quality",
               "live_delay90_s", "sim_delay90_s"}],
     "improvements": [{"seed", "policy", "live_quality_improvement", "sim_quality_improvement",
                       "live_delay_reduction_90", "sim_delay_reduction_90"}],
     "errors": {"mean_quality": abs, "delay90_rel": abs relative,
                "quality_improvement": abs points, "delay_reduction_90": abs points}}
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slaq.metrics import summarize
from slaq.traces import read_run, read_trace


def calibrate(run_dirs: Sequence[Path]) -> dict[str, Any]:
    """Fixed cost and one-core CPU s per iteration per job kind, from live runs."""
    from slaq.sweep import fixed_cost_from_runs

    trace = pd.concat([read_trace(Path(d)) for d in run_dirs])
    busy = trace[trace["cpu_s"] > 0]
    kind = busy["algorithm"].astype(str) + "/" + busy["dataset"].astype(str)
    return {
        "runs": [str(d) for d in run_dirs],
        "fixed_cost_s": fixed_cost_from_runs([Path(d) for d in run_dirs]),
        "work_s": {k: float(v) for k, v in busy.groupby(kind)["cpu_s"].median().items()},
        "work_s_default": float(busy["cpu_s"].median()),
    }


def predict_run(run_dir: Path, cal: Mapping[str, Any], scratch: Path) -> pd.DataFrame:
    """Simulated trace of a live run's workload (arrivals, loss curves) at calibrated costs."""
    from slaq.policy import load_policy
    from slaq.sim import sim_jobs_from_trace, simulate_to_dir

    meta = read_run(Path(run_dir))
    config = meta.get("config", {})
    jobs = [
        replace(
            j,
            work_s=cal["work_s"].get(f"{j.spec.algorithm}/{j.spec.dataset}", cal["work_s_default"]),
            overhead_s=cal["fixed_cost_s"],
        )
        for j in sim_jobs_from_trace(read_trace(Path(run_dir)), meta.get("jobs"))
    ]
    policy = load_policy(str(config.get("policy", meta["policy"])), **config.get("policy_args", {}))
    out = Path(scratch) / Path(run_dir).name
    simulate_to_dir(
        jobs,
        policy,
        cores=int(meta["cores"]),
        epoch_s=float(config.get("epoch_s", meta.get("epoch_s", 3.0))),
        seed=int(meta.get("seed", 0)),
        out_dir=out,
    )
    return read_trace(out)


def _mean_abs(values: Sequence[float]) -> float:
    arr = np.abs(np.asarray(values, float))
    return float(np.nanmean(arr)) if arr.size else float("nan")


def _run_errors(d: Path, live: pd.DataFrame, sim: pd.DataFrame) -> dict[str, Any]:
    """Live against predicted mean quality and mean 90% delay of one run (shared L*)."""
    meta = read_run(d)
    s = summarize({"live": live, "sim": sim}, "live", targets=(90,))["policies"]
    return {
        "run_dir": str(d),
        "policy": str(meta["policy"]),
        "seed": int(meta.get("seed", 0)),
        "live_mean_quality": s["live"]["mean_quality"],
        "sim_mean_quality": s["sim"]["mean_quality"],
        "live_delay90_s": s["live"]["mean_delay_s"]["90"],
        "sim_delay90_s": s["sim"]["mean_delay_s"]["90"],
    }


def _improvements(
    runs: list[dict[str, Any]], traces: Mapping[str, tuple], baseline: str
) -> list[dict[str, Any]]:
    """Per seed with a baseline run: live and predicted improvement of every other policy."""
    out = []
    for seed in sorted({r["seed"] for r in runs}):
        here = {r["policy"]: traces[r["run_dir"]] for r in runs if r["seed"] == seed}
        if baseline not in here or len(here) < 2:
            continue
        got = [
            summarize({p: t[i] for p, t in here.items()}, baseline, targets=(90,)) for i in (0, 1)
        ]
        for p in here:
            if p == baseline:
                continue
            lv, sm = got[0]["policies"][p], got[1]["policies"][p]
            out.append(
                {
                    "seed": seed,
                    "policy": p,
                    "live_quality_improvement": lv["quality_improvement"],
                    "sim_quality_improvement": sm["quality_improvement"],
                    "live_delay_reduction_90": lv["delay_reduction"]["90"],
                    "sim_delay_reduction_90": sm["delay_reduction"]["90"],
                }
            )
    return out


def fidelity_out_of_sample(
    calibrate_dirs: Sequence[Path], predict_dirs: Sequence[Path], baseline: str = "fair"
) -> dict[str, Any]:
    """Calibrate on some live runs, predict the others' metrics, report the errors."""
    cal = calibrate(calibrate_dirs)
    traces: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for d in map(Path, predict_dirs):
            traces[str(d)] = (read_trace(d), predict_run(d, cal, Path(scratch)))
    runs = [_run_errors(Path(d), *traces[d]) for d in traces]
    improvements = _improvements(runs, traces, baseline)
    errors = {
        "mean_quality": _mean_abs([r["sim_mean_quality"] - r["live_mean_quality"] for r in runs]),
        "delay90_rel": _mean_abs(
            [(r["sim_delay90_s"] - r["live_delay90_s"]) / r["live_delay90_s"] for r in runs]
        ),
    }
    for m in ("quality_improvement", "delay_reduction_90"):
        errors[m] = _mean_abs([i[f"sim_{m}"] - i[f"live_{m}"] for i in improvements])
    return {
        "baseline": baseline,
        "calibration": cal,
        "runs": runs,
        "improvements": improvements,
        "errors": errors,
    }
