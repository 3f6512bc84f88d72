"""``slaq sweep cell|report``: the paper-scale load sweep on the command line (slaq.sweep).

Registered in slaq.cli through ``add_subcommands``; one ``sweep cell`` call is one Snakemake job.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from slaq import sweep
from slaq.cli_checks import positive_int

log = logging.getLogger(__name__)


def _work_scale(text: str) -> float | None:
    """A positive float, or ``auto`` (None: slaq.sweep.auto_work_scale)."""
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'auto'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("--work-scale must be positive")
    return value


def _cmd_cell(args: argparse.Namespace) -> int:
    from slaq.policy import parse_policy_args

    if args.fixed_cost_s is not None:
        fixed, source = float(args.fixed_cost_s), "given"
    else:
        fixed = sweep.fixed_cost_from_runs([Path(d) for d in args.fixed_cost_from])
        source = "median wall - cpu_s/cores of " + ", ".join(args.fixed_cost_from)
    meta = sweep.run_cell(
        Path(args.library),
        mix=args.mix,
        load=args.load,
        seed=args.seed,
        policy=args.policy,
        policy_args=parse_policy_args(args.policy_arg),
        cores=args.cores,
        n_jobs=args.n_jobs,
        epoch_s=args.epoch_s,
        work_scale=args.work_scale,
        fixed_cost_s=fixed,
        fixed_cost_source=source,
        out_dir=Path(args.out),
        max_cores=args.max_cores,
    )
    r = meta["regime"]
    log.info(
        "%s %s load %.2f seed %d: median job %.0f epochs, %.1f jobs active, offered load %.2f"
        " (fixed cost %.3f s) -> %s",
        meta["sweep"]["label"],
        args.mix,
        args.load,
        args.seed,
        r["median_epochs"],
        r["mean_active_jobs"],
        r["offered_load"],
        fixed,
        args.out,
    )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from slaq.traces import write_json_atomic

    result = sweep.report([Path(d) for d in args.runs], baseline=args.baseline)
    write_json_atomic(result, Path(args.out))
    for mix, policies in result["up_to"].items():
        for label, best in policies.items():
            q = best.get("quality_improvement", {})
            log.info(
                "%s %s: up to %+.1f%% quality (load %s)",
                mix,
                label,
                100 * q.get("mean", float("nan")),
                q.get("load"),
            )
    log.info("wrote %s", args.out)
    return 0


def _add_cell(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cell", help="simulate one mix x load x seed x policy cell")
    p.add_argument("--library", required=True, help="curve library Parquet")
    p.add_argument("--mix", required=True, choices=sweep.MIXES)
    p.add_argument("--load", type=float, required=True, help="offered load (1 = saturated)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--policy", required=True, help="policy name or package.module:Class")
    p.add_argument("--policy-arg", action="append", default=[], metavar="K=V")
    p.add_argument("--cores", type=int, default=sweep.DEFAULT_CORES)
    p.add_argument("--n-jobs", type=int, default=sweep.DEFAULT_N_JOBS)
    p.add_argument("--epoch-s", type=float, default=sweep.DEFAULT_EPOCH_S)
    p.add_argument(
        "--max-cores",
        type=positive_int,
        default=None,
        help="cores one job can use at most (its partitions; default: unbounded)",
    )
    p.add_argument(
        "--work-scale",
        type=_work_scale,
        default=None,
        help="multiply one-core CPU s per iteration (number, or 'auto': 0.05 s per core)",
    )
    fixed = p.add_mutually_exclusive_group(required=True)
    fixed.add_argument("--fixed-cost-s", type=float, help="Spark's fixed cost per iteration")
    fixed.add_argument(
        "--fixed-cost-from", nargs="+", metavar="RUN_DIR", help="measure it on live runs"
    )
    p.add_argument("--out", required=True, help="run directory to write")
    p.set_defaults(func=_cmd_cell)


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add ``sweep cell`` and ``sweep report`` to the ``slaq`` parser."""
    parser = sub.add_parser("sweep", help="paper-scale load sweep over the curve library")
    inner = parser.add_subparsers(dest="sweep_command", required=True)
    _add_cell(inner)
    p = inner.add_parser("report", help="statistics over seeds of sweep cells -> sweep.json")
    p.add_argument("--runs", nargs="+", required=True, help="sweep cell run directories")
    p.add_argument("--baseline", default="fair", help="baseline policy label")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_report)
