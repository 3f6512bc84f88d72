"""``slaq simulate``: a workload, a recorded run or a pool of recorded jobs in the simulator."""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Any

from slaq import cli_checks as checks
from slaq.policy import load_policy, parse_policy_args
from slaq.workload import WorkloadError

log = logging.getLogger("slaq")


def _sim_jobs(args: argparse.Namespace) -> tuple[list, dict]:
    """The simulated jobs and a record of where they came from (pool, trace or workload)."""
    from slaq.sim import sim_jobs_from_pool, sim_jobs_from_trace, sim_jobs_from_workload
    from slaq.traces import read_run, read_trace

    checks.require_ok_runs(
        [Path(d) for d in [*(args.pool or []), *([args.trace] if args.trace else [])]]
    )
    if args.pool:
        pool = [
            j
            for d in args.pool
            for j in sim_jobs_from_trace(read_trace(Path(d)), read_run(Path(d)).get("jobs"))
        ]
        jobs = sim_jobs_from_pool(
            pool, args.n_jobs, args.mean_interarrival, args.seed, args.work_scale, args.overhead
        )
        source = {
            "pool": [str(d) for d in args.pool],
            "n_jobs": args.n_jobs,
            "mean_interarrival_s": args.mean_interarrival,
            "work_scale": args.work_scale,
            "overhead_s": args.overhead,
        }
        return jobs, source
    if args.trace:
        recorded = read_run(Path(args.trace))
        jobs = sim_jobs_from_trace(read_trace(Path(args.trace)), recorded.get("jobs"))
        # A replay runs on the cluster the recorded run had, unless told otherwise.
        args.cores = args.cores or int(recorded["cores"])
        return jobs, {"trace": str(args.trace)}
    if not args.workload:
        raise WorkloadError("give --workload FILE or --trace RUN_DIR")
    workload = checks.load_workload_file(args.workload)
    return sim_jobs_from_workload(workload, args.seed), {
        "workload": str(args.workload),
        "workload_name": workload.name,
    }


def _cmd_simulate(args: argparse.Namespace) -> int:
    from slaq.sim import simulate_to_dir

    params = parse_policy_args(args.policy_arg)
    policy = load_policy(args.policy, **params)
    out = Path(args.out)
    checks.check_out_dir(out)
    if args.n_jobs < 1 or not args.epoch > 0:
        raise ValueError(
            f"--n-jobs must be at least 1 and --epoch positive, got {args.n_jobs}, {args.epoch}"
        )
    jobs, source = _sim_jobs(args)
    if not args.cores or args.cores < 1:
        raise WorkloadError("give --cores N (N >= 1) for a simulation")
    config = {
        **source,
        "policy": args.policy,
        "policy_args": params,
        "cores": args.cores,
        "epoch_s": args.epoch,
        "replan": args.replan,
    }
    existed = out.exists()
    try:
        result = simulate_to_dir(
            jobs,
            policy,
            cores=args.cores,
            epoch_s=args.epoch,
            seed=args.seed,
            out_dir=out,
            config=config,
            replan_on_events=args.replan == "events",
            progress=not args.quiet,
        )
    except BaseException:
        if not existed:  # nothing half-written (an old run's run.json is already gone)
            shutil.rmtree(out, ignore_errors=True)
        raise
    log.info(
        "simulated %d jobs, %d iterations, %.0f virtual seconds -> %s",
        len(jobs),
        len(result.trace),
        result.end_s,
        args.out,
    )
    return 0


def add_subcommands(sub: Any) -> None:
    """The ``slaq simulate`` sub-command."""
    p = sub.add_parser("simulate", help="run a workload in the trace-replay simulator")
    p.add_argument("--workload", help="workload YAML with synthetic curves")
    p.add_argument("--trace", help="replay the jobs of a recorded run directory instead")
    p.add_argument(
        "--pool",
        nargs="+",
        metavar="RUN_DIR",
        help="draw --n-jobs jobs from the loss curves of recorded runs",
    )
    p.add_argument("--n-jobs", type=int, default=160, help="jobs drawn from --pool")
    p.add_argument(
        "--overhead",
        type=float,
        help="fixed seconds per iteration of jobs drawn from --pool (default: as recorded)",
    )
    p.add_argument(
        "--work-scale",
        type=float,
        default=1.0,
        help="multiply the work per iteration of jobs drawn from --pool",
    )
    p.add_argument(
        "--mean-interarrival",
        type=float,
        default=10.0,
        help="Poisson mean inter-arrival (s) of jobs drawn from --pool",
    )
    p.add_argument("--policy", required=True, help="policy name or package.module:Class")
    p.add_argument("--policy-arg", action="append", default=[], metavar="K=V")
    p.add_argument(
        "--cores", type=int, help="virtual cluster size (default with --trace: the run's cores)"
    )
    p.add_argument("--epoch", type=float, default=3.0, help="scheduling epoch in seconds")
    p.add_argument(
        "--replan",
        choices=["events", "ticks"],
        default="events",
        help="re-plan on arrivals and job ends as well as at epoch ticks (events, as live), "
        "or only at ticks",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_simulate)
