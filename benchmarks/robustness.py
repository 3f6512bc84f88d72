"""Robustness of SLAQ variants to loss curves they mispredict (issue 5).

Simulated 256-core cluster, 3 s epochs, Poisson arrivals of 100-iteration synthetic jobs
(``tol`` 0, so every job runs all its iterations and ``L*`` is the same in every run). Four
workload mixes: smooth curves only (sublinear + exponential), + 20% noisy curves (5%
multiplicative noise), + 10% plateau-then-drop curves, + both. Three loads, set as offered load
``rho = mean work_s * max_iter / mean interarrival / cores``. Every policy runs on the same jobs
and is compared with fair sharing through :func:`slaq.metrics.summarize`.

Usage::

    python benchmarks/robustness.py --out results/robustness.json            # full (~15 min)
    python benchmarks/robustness.py --quick --out results/robustness-quick.json  # CI, < 60 s
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slaq.metrics import summarize
from slaq.policy import load_policy
from slaq.robust import MECHANISMS
from slaq.sim import run_simulation, sim_jobs_from_workload
from slaq.traces import write_json_atomic
from slaq.workload import Workload, poisson_workload

log = logging.getLogger("robustness")

CORES = 256
EPOCH_S = 3.0
MAX_ITER = 100
# Two job sizes (CPU seconds per iteration at one core), equally likely: mean 10 s.
WORK_S = (6.0, 14.0)
NOISE = 0.05
TARGETS = (80, 90, 95)
BASELINE = "fair"
GRID_STEP_S = 1.0
LOG_FORMAT = "%(asctime)s %(processName)s %(name)s %(message)s"

# Share of noisy and of plateau jobs per mix; the rest keep their smooth curve (half sublinear,
# half exponential).
MIXES: dict[str, dict[str, float]] = {
    "smooth": {"noisy": 0.0, "plateau": 0.0},
    "plateau": {"noisy": 0.0, "plateau": 0.1},
    "noisy": {"noisy": 0.2, "plateau": 0.0},
    "both": {"noisy": 0.2, "plateau": 0.1},
}
# Offered load rho (see the module docstring), lightly to heavily contended.
LOADS: dict[str, float] = {"light": 0.75, "medium": 1.25, "heavy": 2.0}

# label -> (registered policy, parameters)
POLICIES: dict[str, tuple[str, dict[str, Any]]] = {
    "fair": ("fair", {}),
    "fifo": ("fifo", {}),
    "slaq-proto": ("slaq", {"predictor": "geometric", "min_cores": 3, "name": "slaq-proto"}),
    "slaq-curvefit": ("slaq", {"predictor": "curvefit", "min_cores": 3, "name": "slaq-curvefit"}),
    "slaq-robust": ("slaq-robust", {}),
}
# The ablation. The shipped default turns on only ``denoise``; each other mechanism is added
# to it in turn, all four are turned on and then each turned off in turn, and the floor of 0
# cores (where starvation is total) is tried with and without anti-starvation.
ABLATION: dict[str, tuple[str, dict[str, Any]]] = {
    "robust-no-denoise": ("slaq-robust", {"denoise": False}),
    **{f"robust+{m}": ("slaq-robust", {m: True}) for m in MECHANISMS if m != "denoise"},
    "robust-all": ("slaq-robust", dict.fromkeys(MECHANISMS, True)),
    **{
        f"robust-all-no-{m}": ("slaq-robust", {**dict.fromkeys(MECHANISMS, True), m: False})
        for m in MECHANISMS
    },
    "robust-floor0": ("slaq-robust", {"min_cores": 0}),
    "robust-floor0+anti_starvation": ("slaq-robust", {"min_cores": 0, "anti_starvation": True}),
}
ABLATION = {k: (spec, {**params, "name": k}) for k, (spec, params) in ABLATION.items()}


def templates() -> list[dict[str, Any]]:
    """Smooth job templates: sublinear and exponential curves at every job size, equally likely."""
    return [
        {
            "algorithm": "synthetic",
            "dataset": "synthetic",
            "curve": {"family": family},
            "max_iter": MAX_ITER,
            "tol": 0.0,
            "work_s": work,
        }
        for family in ("sublinear", "exponential")
        for work in WORK_S
    ]


def mixed_workload(mix: str, rho: float, n_jobs: int, seed: int) -> Workload:
    """The seed's smooth workload with a seeded subset of its jobs made noisy or plateau.

    Every mix of a seed has the same arrivals, sizes and underlying curves (a noisy job is its
    smooth curve times noise; the noisy set of ``both`` is that of ``noisy``, its plateau set
    that of ``plateau``), so mixes differ only in the curves the issue is about.
    """
    base = poisson_workload(templates(), n_jobs, interarrival_s(rho), seed, name="smooth")
    shares = MIXES[mix]
    order = np.random.default_rng([seed, 5]).permutation(n_jobs)
    n_noisy = round(shares["noisy"] * n_jobs)
    n_plateau = round(shares["plateau"] * n_jobs)
    noisy = set(order[: round(MIXES["both"]["noisy"] * n_jobs)][:n_noisy].tolist())
    plateau_pool = order[round(MIXES["both"]["noisy"] * n_jobs) :]
    plateau = set(plateau_pool[:n_plateau].tolist())
    jobs = []
    for i, spec in enumerate(base.jobs):
        curve = dict(spec.curve or {})
        if i in noisy:
            curve = {"family": "noisy", "noise": NOISE, "base": curve["family"]}
        elif i in plateau:
            curve = {"family": "plateau"}
        jobs.append(replace(spec, curve=curve))
    return Workload(name=f"{mix}-rho{rho:g}-seed{seed}", jobs=tuple(jobs))


def interarrival_s(rho: float) -> float:
    """Mean gap between arrivals that offers load ``rho`` to the cluster."""
    return float(np.mean(WORK_S)) * MAX_ITER / (rho * CORES)


def run_cell(task: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Simulate every policy on one (mix, load, seed) workload; one record per policy."""
    mix, load, seed, n_jobs = task["mix"], task["load"], task["seed"], task["jobs"]
    policies: Mapping[str, tuple[str, dict[str, Any]]] = task["policies"]
    workload = mixed_workload(mix, LOADS[load], n_jobs, seed)
    traces: dict[str, pd.DataFrame] = {}
    seconds: dict[str, float] = {}
    for label, (spec, params) in policies.items():
        jobs = sim_jobs_from_workload(workload, seed)
        started = time.perf_counter()
        result = run_simulation(jobs, load_policy(spec, **params), cores=CORES, epoch_s=EPOCH_S)
        seconds[label] = time.perf_counter() - started
        traces[label] = pd.DataFrame([r.__dict__ for r in result.trace])
    # A fixed grid step keeps time averages independent of which policies share the cell.
    summary = summarize(traces, BASELINE, targets=TARGETS, grid_step_s=GRID_STEP_S)
    records = []
    for label, entry in summary["policies"].items():
        records.append(
            {
                "mix": mix,
                "load": load,
                "seed": seed,
                "policy": label,
                "quality_improvement": entry["quality_improvement"],
                "total_loss_reduction": entry.get("total_loss_reduction"),
                "delay_reduction": entry["delay_reduction"],
                "mean_quality": entry["mean_quality"],
                "mean_delay_s": entry["mean_delay_s"],
                "sim_seconds": seconds[label],
            }
        )
    log.info(
        "%-7s %-6s seed %d: %s",
        mix,
        load,
        seed,
        ", ".join(
            f"{r['policy']} {r['quality_improvement']:+.2f}/{r['delay_reduction']['90']:+.2f}"
            for r in records
            if r["policy"] != BASELINE
        ),
    )
    return records


def aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and worst case over seeds per mix, load and policy, plus the issue's checks."""
    frame = pd.DataFrame(
        [
            {
                "mix": r["mix"],
                "load": r["load"],
                "seed": r["seed"],
                "policy": r["policy"],
                "quality": r["quality_improvement"],
                **{f"delay{x}": r["delay_reduction"][str(x)] for x in TARGETS},
            }
            for r in records
        ]
    )
    metrics = ["quality", *(f"delay{x}" for x in TARGETS)]
    grouped = frame.groupby(["mix", "load", "policy"])[metrics]
    mean, worst = grouped.mean(), grouped.min()
    cells: dict[str, Any] = {}
    for (mix, load, policy), row in mean.iterrows():
        cells.setdefault(mix, {}).setdefault(load, {})[policy] = {
            "mean": {k: float(v) for k, v in row.items()},
            "min": {k: float(v) for k, v in worst.loc[(mix, load, policy)].items()},
        }
    overall = frame.groupby(["mix", "policy"])[metrics].mean()
    by_mix = {
        mix: {
            p: {k: float(v) for k, v in row.items()}
            for (m, p), row in overall.iterrows()
            if m == mix
        }
        for mix in frame["mix"].unique()
    }
    checks: dict[str, Any] = {}
    for policy in frame["policy"].unique():
        if policy == BASELINE:
            continue
        mine = frame[frame["policy"] == policy]
        losing = mine[(mine["quality"] < 0) | (mine["delay90"] < 0)]
        retained: dict[str, dict[str, float]] = {}
        if "smooth" in set(mine["mix"]):
            smooth = mine[mine["mix"] == "smooth"].groupby("load")[["quality", "delay90"]].mean()
            for (mix, load), row in (
                mine.groupby(["mix", "load"])[["quality", "delay90"]].mean().iterrows()
            ):
                if mix == "smooth" or load not in smooth.index:
                    continue
                base = smooth.loc[load]
                retained[f"{mix}/{load}"] = {
                    k: float(row[k] / base[k]) if base[k] > 0 else float("nan")
                    for k in ("quality", "delay90")
                }
        checks[policy] = {
            "cells_worse_than_fair": [
                f"{r.mix}/{r.load}/seed{r.seed}" for r in losing.itertuples()
            ],
            "retained_vs_smooth": retained,
        }
    return {"by_cell": cells, "by_mix": by_mix, "checks": checks}


def _init_worker() -> None:
    """Worker processes log like the parent (spawned workers start unconfigured)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/robustness.json"))
    parser.add_argument("--seeds", type=int, default=3, help="seeds per mix and load")
    parser.add_argument("--jobs", type=int, default=100, help="jobs per workload")
    parser.add_argument("--mixes", nargs="+", default=list(MIXES), choices=list(MIXES))
    parser.add_argument("--loads", nargs="+", default=list(LOADS), choices=list(LOADS))
    parser.add_argument("--no-ablation", action="store_true", help="skip the ablation variants")
    parser.add_argument("--no-curvefit", action="store_true", help="skip SLAQ with curve fits")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI size: 30 jobs, 1 seed, smooth and both mixes, no curve fits, no ablation",
    )
    parser.add_argument("--processes", type=int, default=2, help="worker processes (max 2)")
    return parser


def _run_cells(tasks: list[dict[str, Any]], processes: int) -> list[dict[str, Any]]:
    """Every cell's records, on up to two spawned worker processes."""
    if processes == 1:
        results = [run_cell(t) for t in tasks]
    else:
        with get_context("spawn").Pool(processes, initializer=_init_worker) as pool:
            results = pool.map(run_cell, tasks, chunksize=1)
    return [r for cell in results for r in cell]


def _config(args: argparse.Namespace, policies: dict[str, Any]) -> dict[str, Any]:
    return {
        "cores": CORES,
        "epoch_s": EPOCH_S,
        "jobs": args.jobs,
        "seeds": args.seeds,
        "max_iter": MAX_ITER,
        "work_s": list(WORK_S),
        "noise": NOISE,
        "mixes": {m: MIXES[m] for m in args.mixes},
        "loads": {
            name: {"rho": LOADS[name], "mean_interarrival_s": interarrival_s(LOADS[name])}
            for name in args.loads
        },
        "policies": {k: {"policy": v[0], "params": v[1]} for k, v in policies.items()},
        "baseline": BASELINE,
        "targets": list(TARGETS),
        "quick": bool(args.quick),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the robustness experiment and write its JSON."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if args.quick:
        args.jobs, args.seeds, args.mixes = 30, 1, ["smooth", "both"]
        args.no_ablation = args.no_curvefit = True
    policies = dict(POLICIES)
    if args.no_curvefit:
        policies.pop("slaq-curvefit")
    if not args.no_ablation:
        policies.update(ABLATION)
    tasks = [
        {"mix": mix, "load": load, "seed": seed, "jobs": args.jobs, "policies": policies}
        for seed in range(args.seeds)
        for load in args.loads
        for mix in args.mixes
    ]
    processes = max(1, min(args.processes, 2, len(tasks), os.cpu_count() or 1))
    log.info("%d workloads x %d policies on %d processes", len(tasks), len(policies), processes)
    started = time.perf_counter()
    records = _run_cells(tasks, processes)
    out = {
        "config": _config(args, policies),
        "records": records,
        **aggregate(records),
        "wall_s": time.perf_counter() - started,
    }
    write_json_atomic(out, args.out)
    log.info("wrote %s in %.0f s", args.out, out["wall_s"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
