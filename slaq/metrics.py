"""Metrics of docs/design.md §4, computed from traces so live and simulated runs compare.

Conventions (stated once, used everywhere):

* ``L_j(0)`` is the job's first reported loss and ``L_j*`` the best loss the job reaches in any
  of the runs compared, so ``q_j`` is 1 at the start and 0 at the best loss.
* A job is active from its arrival until its last iteration ends; before its first iteration
  ends its quality is 1.
* Average quality over time is the mean of ``q`` over active jobs on a regular grid; its time
  average skips instants with no active job. It can flatter a policy that keeps near-converged
  jobs alive, so it is always reported beside the total normalized loss (docs/design.md §4).
* Total normalized loss is the sum over jobs of the integral of ``q_j(t)`` from arrival to a
  horizon, integrated exactly on the step function the trace defines. Runs compared with each
  other share one horizon (the latest end among them), so a run that ends sooner is not
  rewarded by truncation; a finished job counts with its final ``q`` until the horizon.
* There is no per-time-point "peak" improvement: the maximum of a noisy ratio over thousands
  of instants is biased upward. "Up to" is the best experiment's mean over seeds
  (slaq.sweep).
* Delay to ``x``% is the time from arrival to the end of the first iteration with loss
  reduction ``1 - q >= x/100``; a job that never gets there counts with its end time and is
  reported as censored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slaq.predict import fit_loss_model
from slaq.traces import read_allocations, read_run, read_trace

TARGETS = (80, 90, 95, 99)


def add_quality(traces: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Add a ``q`` column to every trace, with ``L*`` taken over all given runs."""
    frames = [t[["job_id", "loss"]] for t in traces.values() if len(t)]
    if not frames:
        return {k: v.assign(q=pd.Series(dtype=float)) for k, v in traces.items()}
    best = pd.concat(frames).groupby("job_id")["loss"].min()
    out = {}
    for name, trace in traces.items():
        trace = trace.sort_values(["job_id", "iteration"]).copy()
        first = trace.groupby("job_id")["loss"].transform("first")
        star = trace["job_id"].map(best)
        span = first - star
        q = np.where(span > 0, (trace["loss"] - star) / span.where(span > 0, 1.0), 0.0)
        trace["q"] = np.clip(q, 0.0, None)
        out[name] = trace
    return out


def quality_over_time(trace: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """Mean ``q`` over active jobs at each grid time (NaN where no job is active)."""
    total = np.zeros(grid.size)
    count = np.zeros(grid.size)
    for _, rows in trace.groupby("job_id", sort=False):
        arrival = float(rows["arrival_s"].iloc[0])
        ends = rows["t_end_s"].to_numpy(float)
        qs = rows["q"].to_numpy(float)
        active = (grid >= arrival) & (grid <= ends[-1])
        idx = np.searchsorted(ends, grid, side="right") - 1
        q_at = np.where(idx >= 0, qs[np.clip(idx, 0, None)], 1.0)
        total += np.where(active, q_at, 0.0)
        count += active
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def delays(trace: pd.DataFrame, targets: Sequence[int] = TARGETS) -> pd.DataFrame:
    """Per job and target: seconds from arrival to ``x``% loss reduction, and censoring."""
    records = []
    for job_id, rows in trace.groupby("job_id", sort=True):
        arrival = float(rows["arrival_s"].iloc[0])
        reduction = 1.0 - rows["q"].to_numpy(float)
        ends = rows["t_end_s"].to_numpy(float)
        for x in targets:
            hit = np.flatnonzero(reduction >= x / 100.0 - 1e-12)
            reached = hit.size > 0
            t = ends[hit[0]] if reached else ends[-1]
            records.append(
                {"job_id": job_id, "target": x, "delay_s": t - arrival, "censored": not reached}
            )
    return pd.DataFrame.from_records(records)


def job_loss_integrals(trace: pd.DataFrame, horizon_s: float | None = None) -> pd.Series:
    """Per job: integral of ``q_j(t)`` from arrival to ``horizon_s`` (default: trace end).

    ``q`` is 1 until the first iteration ends, then steps to each iteration's ``q``; the last
    one holds until the horizon (docs/design.md §4).
    """
    if trace.empty:
        return pd.Series(dtype=float, name="loss_integral")
    t = trace.sort_values(["job_id", "iteration"])
    horizon = float(t["t_end_s"].max()) if horizon_s is None else float(horizon_s)
    ends = t["t_end_s"].clip(upper=horizon)
    following = ends.groupby(t["job_id"]).shift(-1).fillna(horizon)
    steps = (t["q"] * (following - ends).clip(lower=0.0)).groupby(t["job_id"]).sum()
    first = t.groupby("job_id").agg(arrival=("arrival_s", "first"), end=("t_end_s", "first"))
    before = (first["end"].clip(upper=horizon) - first["arrival"]).clip(lower=0.0)
    return (steps + before).rename("loss_integral")


def total_normalized_loss(trace: pd.DataFrame, horizon_s: float | None = None) -> float:
    """Sum over jobs of the integral of ``q_j(t)`` (q-seconds); needs a ``q`` column."""
    return float(job_loss_integrals(trace, horizon_s).sum())


def share_sooner(a: pd.DataFrame, b: pd.DataFrame, target: int = 90) -> dict[str, float]:
    """Shares of jobs (paired by id) that reach ``target`` sooner / later under A than B.

    ``a`` and ``b`` are :func:`delays` tables; only jobs present in both count.
    """
    both = pd.merge(
        a[a["target"] == target], b[b["target"] == target], on="job_id", suffixes=("_a", "_b")
    )
    if both.empty:
        return {"sooner": float("nan"), "later": float("nan"), "jobs": 0}
    reach_a, reach_b = ~both["censored_a"], ~both["censored_b"]
    faster = both["delay_s_a"] < both["delay_s_b"] - 1e-9
    slower = both["delay_s_a"] > both["delay_s_b"] + 1e-9
    sooner = reach_a & (~reach_b | faster)
    later = reach_b & (~reach_a | slower)
    return {"sooner": float(sooner.mean()), "later": float(later.mean()), "jobs": len(both)}


def decision_stats(allocations: pd.DataFrame) -> dict[str, float]:
    """p50/p99 of the policy's decision time per epoch, in milliseconds."""
    if allocations.empty:
        return {"decision_ms_p50": float("nan"), "decision_ms_p99": float("nan")}
    per_epoch = allocations.groupby("epoch")["decision_ms"].first().to_numpy(float)
    return {
        "decision_ms_p50": float(np.percentile(per_epoch, 50)),
        "decision_ms_p99": float(np.percentile(per_epoch, 99)),
    }


def _reduction(value: float, base: float) -> float:
    """``1 - value / base``; 0 when the baseline is 0 (nothing to reduce)."""
    return float(1.0 - value / base) if base > 0 else 0.0


def _policy_entry(
    trace: pd.DataFrame, curve: np.ndarray, horizon: float, targets: Sequence[int]
) -> tuple[dict[str, Any], pd.DataFrame]:
    d = delays(trace, targets)
    mean_delay = d.groupby("target")["delay_s"].mean()
    entry: dict[str, Any] = {
        "jobs": int(trace["job_id"].nunique()),
        "iterations": int(len(trace)),
        "mean_quality": float(np.nanmean(curve)),
        "total_normalized_loss": total_normalized_loss(trace, horizon),
        "mean_delay_s": {str(x): float(mean_delay.get(x, np.nan)) for x in targets},
        "censored_jobs": {str(x): int(d[(d.target == x) & d.censored].shape[0]) for x in targets},
    }
    return entry, d


def summarize(
    traces: Mapping[str, pd.DataFrame],
    baseline: str,
    *,
    grid_step_s: float | None = None,
    targets: Sequence[int] = TARGETS,
) -> dict[str, Any]:
    """Quality, total normalized loss and delays of every run against ``baseline``.

    All runs share ``L*`` (add_quality) and one horizon, the latest end among them.
    """
    if baseline not in traces:
        raise ValueError(f"baseline {baseline!r} is not among the runs: {sorted(traces)}")
    with_q = add_quality(traces)
    end = max(float(t["t_end_s"].max()) for t in with_q.values() if len(t))
    step = grid_step_s or max(end / 2000.0, 1e-3)
    grid = np.arange(0.0, end + step, step)
    curves = {name: quality_over_time(t, grid) for name, t in with_q.items()}
    entries, tables = {}, {}
    for name, trace in with_q.items():
        entries[name], tables[name] = _policy_entry(trace, curves[name], end, targets)
    base = entries[baseline]
    for name, entry in entries.items():
        entry["quality_improvement"] = _reduction(entry["mean_quality"], base["mean_quality"])
        entry["total_loss_reduction"] = _reduction(
            entry["total_normalized_loss"], base["total_normalized_loss"]
        )
        entry["delay_reduction"] = {
            str(x): _reduction(entry["mean_delay_s"][str(x)], base["mean_delay_s"][str(x)])
            for x in targets
        }
        shares = {str(x): share_sooner(tables[name], tables[baseline], x) for x in targets}
        entry["share_sooner"] = {x: v["sooner"] for x, v in shares.items()}
        entry["share_later"] = {x: v["later"] for x, v in shares.items()}
    return {
        "baseline": baseline,
        "targets": list(targets),
        "horizon_s": end,
        "policies": entries,
        "grid_s": grid.tolist(),
        "quality_curves": {k: np.nan_to_num(v, nan=-1.0).tolist() for k, v in curves.items()},
    }


def compare_runs(run_dirs: Sequence[Path], baseline: str = "fair") -> dict[str, Any]:
    """Load run directories (one per policy) and summarize them against ``baseline``."""
    traces: dict[str, pd.DataFrame] = {}
    decisions: dict[str, dict[str, float]] = {}
    for run_dir in run_dirs:
        meta = read_run(Path(run_dir))
        name = str(meta.get("policy") or Path(run_dir).name)
        if name in traces:
            raise ValueError(f"two runs of policy {name!r} given; compare one run per policy")
        traces[name] = read_trace(Path(run_dir))
        decisions[name] = decision_stats(read_allocations(Path(run_dir)))
    summary = summarize(traces, baseline)
    for name, stats in decisions.items():
        summary["policies"][name].update(stats)
    summary["runs"] = {name: str(d) for name, d in zip(traces, run_dirs, strict=True)}
    return summary


def prediction_errors(
    losses_by_job: Mapping[str, np.ndarray],
    predictors: Sequence[str] = ("curvefit", "geometric"),
    horizons: Sequence[int] = (1, 5, 10, 20),
    min_history: int = 5,
    stride: int = 1,
) -> pd.DataFrame:
    """Relative error ``|predicted - actual| / |actual|`` of the loss ``k`` iterations ahead.

    Every job is cut after each ``n >= min_history`` iterations and each predictor fitted on
    the first ``n`` losses only.
    """
    records = []
    for job_id, losses in losses_by_job.items():
        losses = np.asarray(losses, float)
        for n in range(min_history, losses.size, stride):
            for predictor in predictors:
                model = fit_loss_model(losses[:n], predictor)
                for k in horizons:
                    if n + k > losses.size:
                        continue
                    actual = losses[n + k - 1]
                    pred = float(model.predict_ahead(float(k)))
                    records.append(
                        {
                            "job_id": job_id,
                            "predictor": predictor,
                            "history": n,
                            "horizon": k,
                            "rel_error": abs(pred - actual) / max(abs(actual), 1e-12),
                        }
                    )
    return pd.DataFrame.from_records(records)


def fidelity(live_dir: Path, sim_dir: Path, grid_points: int = 2000) -> dict[str, Any]:
    """How closely a simulated replay tracks the live run it replays.

    Reports the mean absolute difference of average normalized loss over time (``L*`` shared
    by both) and of each job's delay to 90% loss reduction.
    """
    live, sim = read_trace(Path(live_dir)), read_trace(Path(sim_dir))
    policy = str(read_run(Path(live_dir)).get("policy", "live"))
    both = add_quality({"live": live, "simulated": sim})
    end = max(float(t["t_end_s"].max()) for t in both.values())
    grid = np.linspace(0.0, end, grid_points)
    curves = {k: quality_over_time(v, grid) for k, v in both.items()}
    ok = np.isfinite(curves["live"]) & np.isfinite(curves["simulated"])
    d = {k: delays(v, (90,)).set_index("job_id")["delay_s"] for k, v in both.items()}
    gap = (d["live"] - d["simulated"]).abs().dropna()
    return {
        "policy": policy,
        "mad_quality": float(np.mean(np.abs(curves["live"][ok] - curves["simulated"][ok]))),
        "mad_delay90_s": float(gap.mean()) if len(gap) else float("nan"),
        "mean_delay90_s": {k: float(v.mean()) for k, v in d.items()},
        "live": {
            "grid_s": grid.tolist(),
            "quality_curves": {policy: np.nan_to_num(curves["live"], nan=-1.0).tolist()},
        },
        "simulated": {
            "grid_s": grid.tolist(),
            "quality_curves": {policy: np.nan_to_num(curves["simulated"], nan=-1.0).tolist()},
        },
    }


def compare_seeds(run_dirs: Sequence[Path], baseline: str = "fair") -> dict[str, Any]:
    """Runs of several seeds per policy: per-seed comparisons and statistics over seeds."""
    from slaq.stats import seed_statistics

    by_seed: dict[int, list[Path]] = {}
    for d in map(Path, run_dirs):
        by_seed.setdefault(int(read_run(d).get("seed", 0)), []).append(d)
    per_seed = {seed: compare_runs(dirs, baseline) for seed, dirs in sorted(by_seed.items())}
    for summary in per_seed.values():  # the curves are per seed; keep the JSON small
        summary.pop("grid_s"), summary.pop("quality_curves")
    return {
        "baseline": baseline,
        "seeds": sorted(per_seed),
        "per_seed": {str(k): v for k, v in per_seed.items()},
        "statistics": seed_statistics(list(per_seed.values())),
    }
