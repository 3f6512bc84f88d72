"""Load sweep of paper-scale simulations drawn from the curve library (issue 15, §2 and §4).

One *cell* is one simulation: a mix, an offered load, a seed and a policy (with arguments).
``slaq sweep cell`` writes it as a run directory (``trace.parquet``, ``allocations.parquet``,
``run.json``); ``run.json`` gains a ``sweep`` section (the cell's settings, the fixed cost
used and the library's CPU costs) and a ``regime`` section (slaq.regime.regime_figures).
``slaq sweep report`` turns many cells into ``sweep.json``.

Jobs: ``n_jobs`` curves drawn (seeded) from the library. A job on ``a`` cores takes
``cpu_s_per_iter * work_scale / a + fixed_cost_s`` seconds per iteration: one-core CPU seconds
measured in-process, scaled to paper-size data, plus Spark's fixed per-iteration cost
measured live (docs/design.md §2, "One loop, two drivers"). Mixes: ``smooth`` (curves as
recorded) and ``mixed`` (a seeded 20% made noisy with 5% multiplicative noise, 10% given a
flat plateau prefix of 15-35% of their length). Arrivals are Poisson with the gap that gives
the offered load, rescaled so the last arrival falls at ``total work / (cores x load)``:
every seed then has exactly the nominal offered load (slaq.regime).

``sweep.json`` schema (all improvements are fractions; positive = better than baseline)::

    {"baseline": "fair", "targets": [80, 90, 95, 99], "metrics": [METRIC, ...],
     "cells": [{"mix": str, "load": float, "policy": LABEL, "n_seeds": int,
                "seeds": [int], "metrics": {METRIC: STAT}}],
     "regime": [{"mix": str, "load": float, "policy": LABEL (the baseline's), "n_seeds": int,
                 "median_epochs": STAT, "mean_active_jobs": STAT, "offered_load": STAT,
                 "paper_regime_all_seeds": bool}],
     "up_to": {mix: {LABEL: {METRIC: {"load": float, **STAT}}}},
     "loses": {mix: {LABEL: [{"load": float, "metric": METRIC, "mean": float,
                              "ci_high": float}]}},
     "settings": [{"mix", "load", "seed", "cores", "n_jobs", "epoch_s", "work_scale",
                   "fixed_cost_s", "cpu_s_per_iter_median", ...}]  (one per run directory),
     "per_seed": [{"mix", "load", "seed", "policy", METRIC: float, ...}]}

    STAT   = {"mean", "ci_low", "ci_high", "min", "max", "n", "n_nan", "confidence",
              "within_noise"}  (slaq.stats.mean_ci: Student-t 95% CI over seeds)
    LABEL  = policy name, plus "[k=v,...]" when it has arguments (e.g. "slaq[min_cores=1]")
    METRIC = quality_improvement | total_loss_reduction | total_normalized_loss |
             mean_quality | delay_reduction_{80,90,95,99} | share_sooner_90 | share_later_90

"up to" is the best load's mean over seeds (never a per-time-point peak); "loses" lists the
loads and metrics whose CI lies entirely below zero (improvement metrics only).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slaq.traces import read_trace

log = logging.getLogger(__name__)

MIXES = ("smooth", "mixed")
NOISY_SHARE, PLATEAU_SHARE, NOISE = 0.2, 0.1, 0.05
# Defaults of the paper-scale sweep. Under a work-conserving fair share the active count is
# about rho / (1 - rho) below saturation, so the paper's regime (>= 10 jobs active, a job living
# >= 50 epochs) needs load near or above 1 and enough jobs for the steady state to outweigh the
# tail: with a median one-core work per iteration of 0.05 s per core of the cluster ("auto" work
# scale), 120 jobs at load 1.2 give 10.6-13 active and a median job of 78-99 epochs with a
# 0.3 s fixed cost, 20-23 active and 226-309 epochs with the 1.44 s the live runs measured;
# 100 jobs give 17-19 active and 192-286 epochs (docs/design.md §2, "The paper's regime").
DEFAULT_CORES = 128
DEFAULT_N_JOBS = 100
DEFAULT_EPOCH_S = 3.0
DEFAULT_LOADS = (0.6, 0.8, 0.95, 1.2)
AUTO_WORK_PER_CORE_S = 0.05


@dataclass(frozen=True)
class Curve:
    """The fields of a curve-library record the sweep uses."""

    template_id: str
    algorithm: str
    dataset: str
    losses: np.ndarray
    cpu_s_per_iter: float


def load_library(path: Path) -> list[Curve]:
    """Curves of the library at ``path`` (slaq.curves if present, else its Parquet directly)."""
    try:
        from slaq.curves import load_curve_library
    except ImportError:
        load_curve_library = None
    if load_curve_library is not None:
        return [
            Curve(r.template_id, r.algorithm, r.dataset, np.asarray(r.losses, float),
                  float(r.cpu_s_per_iter))
            for r in load_curve_library(Path(path))
        ]  # fmt: skip
    frame = pd.read_parquet(Path(path)).sort_values(["template_id", "iteration"])
    out = []
    for tid, rows in frame.groupby("template_id", sort=True):
        out.append(
            Curve(str(tid), str(rows["algorithm"].iloc[0]), str(rows["dataset"].iloc[0]),
                  rows["loss"].to_numpy(float), float(rows["cpu_s"].median()))
        )  # fmt: skip
    if not out:
        raise ValueError(f"curve library {path} holds no curves")
    return out


def fixed_cost_from_runs(run_dirs: Sequence[Path]) -> float:
    """Spark's fixed cost per iteration: median over live iterations of wall - cpu_s / cores."""
    frames = [read_trace(Path(d)) for d in run_dirs]
    trace = pd.concat(frames) if frames else pd.DataFrame()
    if trace.empty:
        raise ValueError(f"no iterations in the live runs {list(map(str, run_dirs))}")
    wall = trace["t_end_s"] - trace["t_start_s"]
    extra = wall - trace["cpu_s"] / trace["cores"].clip(lower=1)
    # Below zero only through timer noise; a negative cost would make cores worth more than 1.
    return max(float(extra.median()), 0.0)


def auto_work_scale(library: Sequence[Curve], cores: int) -> float:
    """Work scale giving a median one-core work per iteration of 0.05 s per cluster core."""
    median = float(np.median([c.cpu_s_per_iter for c in library]))
    if median <= 0:
        raise ValueError("curve library has no positive CPU cost per iteration")
    return AUTO_WORK_PER_CORE_S * cores / median


def _mixed_kinds(n: int, rng: np.random.Generator) -> list[str]:
    """Exactly round(20%) noisy and round(10%) plateau jobs, in seeded positions."""
    noisy, plateau = round(NOISY_SHARE * n), round(PLATEAU_SHARE * n)
    kinds = ["noisy"] * noisy + ["plateau"] * plateau + ["smooth"] * (n - noisy - plateau)
    return list(rng.permutation(kinds))


def shape_curve(losses: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A library curve as recorded, with 5% multiplicative noise, or with a plateau prefix."""
    if kind == "smooth":
        return losses
    if kind == "noisy":
        return losses * (1.0 + NOISE * rng.standard_normal(losses.size))
    if kind == "plateau":
        length = max(1, int(rng.uniform(0.15, 0.35) * losses.size))
        # A tiny drift keeps the largest drop so far positive (normalization divides by it).
        drift = 1e-4 * abs(losses[0]) * np.arange(length, 0, -1)
        return np.concatenate([losses[0] + drift, losses])
    raise ValueError(f"unknown curve kind {kind!r}")


def draw_jobs(
    library: Sequence[Curve],
    *,
    mix: str,
    load: float,
    seed: int,
    cores: int,
    n_jobs: int,
    work_scale: float,
    fixed_cost_s: float,
    max_cores: int | None = None,
) -> list[Any]:
    """``n_jobs`` seeded SimJobs from the library at offered ``load`` (see module docstring)."""
    from slaq.sim import SimJob
    from slaq.workload import JobSpec, poisson_arrivals

    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}; choose one of {MIXES}")
    if load <= 0 or n_jobs < 2:
        raise ValueError("a sweep cell needs load > 0 and at least 2 jobs")
    if max_cores is not None and max_cores < 1:
        raise ValueError(f"max_cores must be at least 1, got {max_cores}")
    rng = np.random.default_rng([seed, 15])
    picks = rng.integers(0, len(library), size=n_jobs)
    kinds = _mixed_kinds(n_jobs, rng) if mix == "mixed" else ["smooth"] * n_jobs
    curves = [shape_curve(library[p].losses, k, rng) for p, k in zip(picks, kinds, strict=True)]
    works = [library[p].cpu_s_per_iter * work_scale for p in picks]
    total = sum(w * c.size for w, c in zip(works, curves, strict=True))
    span = total / (cores * load)
    arrivals = poisson_arrivals(n_jobs, span / (n_jobs - 1), seed + 1)
    arrivals = arrivals * (span / arrivals[-1])
    jobs = []
    for i, p in enumerate(picks):
        src = library[p]
        spec = JobSpec(
            job_id=f"s{i:04d}",
            algorithm=src.algorithm,
            dataset=src.dataset,
            arrival_s=float(arrivals[i]),
            max_iter=int(curves[i].size),
            tol=0.0,
            params={"template_id": src.template_id, "curve": kinds[i]},
            seed=i,
        )
        jobs.append(SimJob(spec, curves[i], works[i], fixed_cost_s, max_cores))
    return jobs


def policy_label(name: str, args: Mapping[str, Any]) -> str:
    """Policy name, with its arguments in a stable order: ``slaq[min_cores=1]``."""
    if not args:
        return name
    return name + "[" + ",".join(f"{k}={args[k]}" for k in sorted(args)) + "]"


def run_cell(
    library_path: Path,
    *,
    mix: str,
    load: float,
    seed: int,
    policy: str,
    policy_args: Mapping[str, Any],
    cores: int,
    n_jobs: int,
    epoch_s: float,
    work_scale: float | None,
    fixed_cost_s: float,
    fixed_cost_source: str,
    out_dir: Path,
    max_cores: int | None = None,
) -> dict[str, Any]:
    """Simulate one cell into ``out_dir``; returns its run metadata (with sweep and regime)."""
    from slaq.policy import load_policy
    from slaq.regime import regime_figures
    from slaq.sim import simulate_to_dir
    from slaq.traces import RUN_FILE, read_run, write_json_atomic

    library = load_library(Path(library_path))
    scale = auto_work_scale(library, cores) if work_scale is None else float(work_scale)
    jobs = draw_jobs(
        library, mix=mix, load=load, seed=seed, cores=cores, n_jobs=n_jobs,
        work_scale=scale, fixed_cost_s=fixed_cost_s, max_cores=max_cores,
    )  # fmt: skip
    cpu = np.array([c.cpu_s_per_iter for c in library])
    settings = {
        "mix": mix, "load": float(load), "seed": int(seed), "policy": policy,
        "policy_args": dict(policy_args), "label": policy_label(policy, policy_args),
        "cores": int(cores), "n_jobs": int(n_jobs), "epoch_s": float(epoch_s),
        "max_cores": max_cores, "work_scale": scale, "work_scale_auto": work_scale is None,
        "fixed_cost_s": float(fixed_cost_s), "fixed_cost_source": fixed_cost_source,
        "library": str(library_path), "library_curves": len(library),
        "cpu_s_per_iter_median": float(np.median(cpu)), "cpu_s_per_iter_min": float(cpu.min()),
        "cpu_s_per_iter_max": float(cpu.max()),
        "noisy_share": NOISY_SHARE if mix == "mixed" else 0.0,
        "plateau_share": PLATEAU_SHARE if mix == "mixed" else 0.0,
    }  # fmt: skip
    out_dir = Path(out_dir)
    simulate_to_dir(
        jobs, load_policy(policy, **dict(policy_args)), cores=cores, epoch_s=epoch_s,
        seed=seed, out_dir=out_dir, config=settings,
    )  # fmt: skip
    work = float(sum(j.work_s * j.losses.size for j in jobs))
    meta = read_run(out_dir)
    meta["sweep"] = settings
    meta["fixed_cost_s"] = float(fixed_cost_s)
    meta["regime"] = regime_figures(read_trace(out_dir), epoch_s=epoch_s, cores=cores,
                                    work_cpu_s=work)  # fmt: skip
    write_json_atomic(meta, out_dir / RUN_FILE)
    return meta


METRICS = (
    "quality_improvement",
    "total_loss_reduction",
    "total_normalized_loss",
    "mean_quality",
    *(f"delay_reduction_{x}" for x in (80, 90, 95, 99)),
    "share_sooner_90",
    "share_later_90",
)
# Metrics where below zero means the policy did worse than the baseline.
IMPROVEMENTS = ("quality_improvement", "total_loss_reduction") + tuple(
    f"delay_reduction_{x}" for x in (80, 90, 95, 99)
)


def _seed_rows(group: Mapping[str, Path], baseline: str) -> list[dict[str, Any]]:
    """Metrics of every policy of one (mix, load, seed) against the baseline."""
    from slaq.metrics import summarize

    if baseline not in group:
        raise ValueError(f"no {baseline!r} run among {sorted(group)} ({list(group.values())})")
    summary = summarize({label: read_trace(d) for label, d in group.items()}, baseline)
    rows = []
    for label, e in summary["policies"].items():
        row = {
            "policy": label,
            **{k: e[k] for k in METRICS[:4]},
            **{f"delay_reduction_{x}": e["delay_reduction"][x] for x in e["delay_reduction"]},
            "share_sooner_90": e["share_sooner"].get("90", np.nan),
            "share_later_90": e["share_later"].get("90", np.nan),
        }
        rows.append(row)
    return rows


def _collect(run_dirs: Sequence[Path], baseline: str) -> tuple[pd.DataFrame, list[dict]]:
    """Per-seed metric rows and per-run settings/regime of all cells."""
    from slaq.traces import read_run

    groups: dict[tuple, dict[str, Path]] = {}
    settings = []
    for d in map(Path, run_dirs):
        meta = read_run(d)
        if "sweep" not in meta:
            raise ValueError(f"{d} is not a sweep cell (run.json has no 'sweep' section)")
        s = meta["sweep"]
        key = (s["mix"], float(s["load"]), int(s["seed"]))
        if s["label"] in groups.setdefault(key, {}):
            raise ValueError(f"two runs of {s['label']!r} for mix/load/seed {key}")
        groups[key][s["label"]] = d
        settings.append({**s, "run_dir": str(d), "regime": meta.get("regime", {})})
    rows = []
    for (mix, load, seed), group in sorted(groups.items()):
        for row in _seed_rows(group, baseline):
            rows.append({"mix": mix, "load": load, "seed": seed, **row})
    return pd.DataFrame(rows), settings


def _cells(per_seed: pd.DataFrame) -> list[dict[str, Any]]:
    from slaq.stats import mean_ci

    cells = []
    for (mix, load, policy), g in per_seed.groupby(["mix", "load", "policy"], sort=True):
        cells.append(
            {
                "mix": mix, "load": float(load), "policy": policy, "n_seeds": int(len(g)),
                "seeds": sorted(int(s) for s in g["seed"]),
                "metrics": {m: mean_ci(g[m].to_numpy(float)) for m in METRICS},
            }
        )  # fmt: skip
    return cells


def _regime(settings: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Regime figures per mix and load, from the baseline's runs (the regime statement)."""
    from slaq.stats import mean_ci

    rows = [
        {"mix": s["mix"], "load": float(s["load"]), **s["regime"]}
        for s in settings
        if s["label"] == baseline and s.get("regime")
    ]
    out = []
    for (mix, load), g in pd.DataFrame(rows).groupby(["mix", "load"], sort=True) if rows else []:
        entry = {"mix": mix, "load": float(load), "policy": baseline, "n_seeds": int(len(g))}
        for key in ("median_epochs", "mean_active_jobs", "offered_load"):
            entry[key] = mean_ci(g[key].to_numpy(float))
        entry["paper_regime_all_seeds"] = bool(g["paper_regime"].all())
        out.append(entry)
    return out


def _best_and_losses(cells: list[dict[str, Any]], baseline: str) -> tuple[dict, dict]:
    """ "Up to" = the best load's seed mean per metric; losses = CIs entirely below zero."""
    up_to: dict[str, dict[str, dict[str, Any]]] = {}
    loses: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for cell in cells:
        if cell["policy"] == baseline:
            continue
        best = up_to.setdefault(cell["mix"], {}).setdefault(cell["policy"], {})
        lost = loses.setdefault(cell["mix"], {}).setdefault(cell["policy"], [])
        for m in IMPROVEMENTS:
            stat = cell["metrics"][m]
            if np.isfinite(stat["mean"]) and stat["mean"] > best.get(m, {}).get("mean", -np.inf):
                best[m] = {"load": cell["load"], **stat}
            if np.isfinite(stat["ci_high"]) and stat["ci_high"] < 0:
                lost.append(
                    {"load": cell["load"], "metric": m, "mean": stat["mean"],
                     "ci_high": stat["ci_high"]}
                )  # fmt: skip
    return up_to, loses


def report(run_dirs: Sequence[Path], baseline: str = "fair") -> dict[str, Any]:
    """``sweep.json`` (schema in the module docstring) from sweep cell run directories."""
    per_seed, settings = _collect(run_dirs, baseline)
    cells = _cells(per_seed)
    up_to, loses = _best_and_losses(cells, baseline)
    return {
        "baseline": baseline,
        "targets": [80, 90, 95, 99],
        "metrics": list(METRICS),
        "cells": cells,
        "regime": _regime(settings, baseline),
        "up_to": up_to,
        "loses": loses,
        "settings": settings,
        "per_seed": per_seed.to_dict(orient="records"),
    }
