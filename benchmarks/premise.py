"""Premise check (docs/design.md §7): does a job holding k of C slots get about k/C of the CPU?

Two identical compute-bound jobs (an MLP trained by L-BFGS on synthetic float32 data, sized so
one iteration costs about 1-2 CPU seconds at one core) are held at 6 and 2 of 8 slots on a
saturated local cluster (2 workers x 4 cores) for a fixed window, once with the per-epoch CPU
budget and once with task counts only. Reports the iterations each completed in the window and
their ratio (ideal 3x, target >= 2.5x).

    python benchmarks/premise.py --out results/premise.json
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slaq.algorithms import StopTraining, make_trainer, measure_iteration_cpu_s
from slaq.policy import ClusterView, JobView, PolicyTraits
from slaq.spark.cluster import AttachedCluster, LocalSparkCluster, signals_as_exceptions
from slaq.spark.engine import run_live
from slaq.spark.utilisation import UTILISATION_FILE, summarize
from slaq.traces import environment_versions, read_run, read_trace, write_json_atomic
from slaq.workload import parse_workload

log = logging.getLogger("premise")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class FixedPolicy:
    """Holds every job at a fixed number of cores (the premise needs no decisions)."""

    shares: Mapping[str, int]
    name: str = "fixed"
    traits: PolicyTraits = PolicyTraits()

    def allocate(self, cluster: ClusterView, jobs: Sequence[JobView]) -> Mapping[str, int]:
        """The fixed share of every active job."""
        return {j.job_id: int(self.shares.get(j.job_id, 0)) for j in jobs}


@dataclass
class SyntheticData:
    """Gaussian features with labels from a random linear teacher."""

    X: np.ndarray
    y: np.ndarray
    task: str = "classification"
    meta: dict[str, Any] = field(default_factory=dict)


def synthetic(rows: int, features: int, classes: int, seed: int) -> SyntheticData:
    """A seeded synthetic classification data set (float32)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features), dtype=np.float32)
    W = rng.standard_normal((features, classes)).astype(np.float32)
    y = np.argmax(X @ W + rng.standard_normal((rows, classes), dtype=np.float32), axis=1)
    return SyntheticData(X, y.astype(np.int32))


class _DeadlineContext:
    """Passes calls through and stops the trainer once the hold window is over."""

    def __init__(self, ctx: Any, deadline: float) -> None:
        self.ctx = ctx
        self.deadline = deadline
        self.n_blocks = ctx.n_blocks
        self.n_rows = ctx.n_rows

    def map_reduce(self, fn: Any, params: Any, blocks: Sequence[int] | None = None) -> tuple:
        """Forward to the Spark context."""
        return self.ctx.map_reduce(fn, params, blocks)

    def report(self, objective: float) -> None:
        """Forward, then stop after the deadline."""
        self.ctx.report(objective)
        if time.monotonic() > self.deadline:
            raise StopTraining("hold window over")


class HeldTrainer:
    """An algorithm trainer that runs for ``hold_s`` seconds of wall time."""

    def __init__(self, inner: Any, hold_s: float) -> None:
        self.inner = inner
        self.hold_s = hold_s

    def run(self, ctx: Any) -> None:
        """Train until the hold window closes."""
        self.inner.run(_DeadlineContext(ctx, time.monotonic() + self.hold_s))


def premise_workload(hidden: int) -> Any:
    """Two identical MLP jobs that never converge on their own (the window ends them)."""
    jobs = [
        {
            "id": job_id,
            "algorithm": "mlp",
            "dataset": "premise",
            "arrival_s": 0.0,
            "max_iter": 1_000_000,
            "tol": 0.0,
            "params": {"hidden": hidden},
            "seed": 1,
        }
        for job_id in ("big", "small")
    ]
    return parse_workload({"name": "premise", "jobs": jobs})


def held_window(out: Path, budget: bool, cores: Mapping[str, int], hold: float) -> dict:
    """Per job: iterations, CPU and iteration times inside the hold window of a run."""
    trace = read_trace(out)
    meta = read_run(out)
    result: dict[str, Any] = {"cpu_budget": budget, "jobs": {}}
    for job_id, n in cores.items():
        rows = trace[(trace.job_id == job_id) & (trace.t_end_s <= hold)]
        result["jobs"][job_id] = {
            "cores": n,
            "iterations": len(rows),
            "cpu_s": float(rows.cpu_s.sum()),
            "cpu_share": float(rows.cpu_s.sum()) / hold,
            "median_iteration_wall_s": float((rows.t_end_s - rows.t_start_s).median()),
            "median_iteration_cpu_s": float(rows.cpu_s.median()),
            "wait_s": meta["jobs"][job_id]["wait_s"],
        }
    return result


def run_mode(
    cluster: Any,
    *,
    budget: bool,
    args: argparse.Namespace,
    data: SyntheticData,
    work_dir: Path,
) -> dict[str, Any]:
    """One held run; returns iterations per job inside the window and their ratio."""
    workload = premise_workload(args.hidden)
    policy = FixedPolicy({"big": args.big, "small": args.small})
    hold = args.hold

    def factory(spec: Any, d: int, k: int, p: Mapping[str, Any]) -> Any:
        return HeldTrainer(make_trainer(spec.algorithm, d, k, p, spec.seed), hold)

    out = work_dir / ("budget" if budget else "no-budget")
    run_live(
        workload,
        policy,
        master_url=cluster.master_url,
        total_cores=args.big + args.small,
        epoch_s=args.epoch,
        seed=0,
        out_dir=out,
        data_dir=work_dir / "data",
        progress=False,
        cpu_budget=budget,
        auth_secret=getattr(cluster, "secret", None),
        webui_url=cluster.webui_url,
        dataset_loader=lambda name: data,
        trainer_factory=factory,
    )
    result = held_window(out, budget, {"big": args.big, "small": args.small}, hold)
    small = result["jobs"]["small"]["iterations"]
    big = result["jobs"]["big"]["iterations"]
    result["ratio"] = big / small if small else float("inf")
    result["spark_startup_s"] = read_run(out)["spark_startup_s"]
    # CPUs the run's processes kept busy inside the window (slaq.spark.utilisation).
    util = pd.read_parquet(out / UTILISATION_FILE)
    result["utilisation"] = summarize(util[util.t_s <= hold + 1e-6].to_dict("records"))
    log.info(
        "%s budget: big %d, small %d iterations in %.0fs -> ratio %.2f (ideal %.1f)",
        "with" if budget else "without",
        big,
        small,
        hold,
        result["ratio"],
        args.big / args.small,
    )
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--cluster", default="local", help="'local' or spark://HOST:PORT")
    parser.add_argument("--master-webui", help="web UI of an attached master")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds to hold allocations")
    parser.add_argument("--epoch", type=float, default=3.0)
    parser.add_argument("--big", type=int, default=6)
    parser.add_argument("--small", type=int, default=2)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument(
        "--modes", default="budget,no-budget", help="comma list of budget,no-budget"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the premise benchmark and write its JSON."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    data = synthetic(args.rows, args.features, args.classes, seed=0)
    one_core = measure_iteration_cpu_s(
        "mlp", args.rows, args.features, args.classes, {"hidden": args.hidden}, repeats=2
    )
    log.info("one iteration costs about %.2f CPU s at one core", one_core)
    load_before = os.getloadavg()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    results: dict[str, Any] = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="slaq-premise-") as tmp, signals_as_exceptions():
        work = Path(tmp)
        if args.cluster == "local":
            cluster_cm: Any = LocalSparkCluster(
                workers=2,
                cores_per_worker=(args.big + args.small) // 2,
                memory_per_worker="2g",
                log_dir=work / "cluster-logs",
            )
        else:
            cluster_cm = AttachedCluster(args.cluster, args.master_webui)
        with cluster_cm as cluster:
            startup = getattr(cluster, "startup_s", None)
            for mode in modes:
                results[mode] = run_mode(
                    cluster, budget=mode == "budget", args=args, data=data, work_dir=work
                )
    summary = {
        "benchmark": "premise",
        "config": vars(args),
        "one_core_iteration_cpu_s": one_core,
        "ideal_ratio": args.big / args.small,
        "target_ratio": 2.5,
        "cluster_startup_s": startup,
        "results": results,
        "host_cpus": len(os.sched_getaffinity(0)),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "duration_s": time.monotonic() - t0,
        "versions": environment_versions(include_java=True),
    }
    write_json_atomic(summary, Path(args.out))
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
