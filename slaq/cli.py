"""The ``slaq`` command: policies, workload, compare, fidelity, summary, bench, and (via
plug-in modules) simulate, datasets, run, cluster, sweep and curves."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slaq import cli_checks as checks
from slaq.policy import available_policies, load_policy
from slaq.workload import WorkloadError

log = logging.getLogger("slaq")

# Modules that add their own sub-commands with ``add_subcommands(subparsers)``.
PLUGIN_MODULES = (
    "slaq.sim_cli",
    "slaq.datasets",
    "slaq.spark.cli",
    "slaq.sweep_cli",
    "slaq.curves_cli",
)


def _cmd_policies(args: argparse.Namespace) -> int:
    for name in available_policies():
        policy = load_policy(name)
        doc = (type(policy).__doc__ or "").strip().splitlines()[0:1]
        print(f"{name:12s} {doc[0] if doc else ''}")
    return 0


def _cmd_workload(args: argparse.Namespace) -> int:
    import json

    import yaml

    from slaq.workload import poisson_workload, save_workload

    if (args.config is None) == (args.spec is None):
        raise WorkloadError("give exactly one of --config FILE (with --key) or --spec JSON")
    if args.spec is not None:
        section, source, name = json.loads(args.spec), "--spec", args.name or "workload"
    else:
        config = yaml.safe_load(Path(args.config).read_text())
        section, source = config, str(args.config)
        for key in args.key.split("."):
            if not isinstance(section, dict) or key not in section:
                raise WorkloadError(f"{args.config}: no section {args.key!r}")
            section = section[key]
        name = args.name or f"{config.get('name', 'workload')}-{args.key}"
    for field in ("templates", "n_jobs", "mean_interarrival_s"):
        if not isinstance(section, dict) or field not in section:
            raise WorkloadError(f"{source}: workload section lacks field {field!r}")
    workload = poisson_workload(
        section["templates"],
        int(section["n_jobs"]),
        float(section["mean_interarrival_s"]),
        seed=args.seed,
        name=f"{name}-{args.seed}",
    )
    save_workload(workload, Path(args.out))
    log.info("wrote %d jobs to %s", len(workload.jobs), args.out)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from slaq.metrics import compare_runs, compare_seeds
    from slaq.traces import read_run, write_json_atomic

    runs = [Path(d) for d in args.runs]
    checks.require_ok_runs(runs)
    policies = [read_run(d).get("policy") for d in runs]
    if len(set(policies)) < len(policies):  # several seeds per policy
        result = compare_seeds(runs, baseline=args.baseline)
        write_json_atomic(result, Path(args.out))
        log.info("compared %d seeds -> %s", len(result["seeds"]), args.out)
        return 0
    summary = compare_runs(runs, baseline=args.baseline)
    write_json_atomic(summary, Path(args.out))
    for name, entry in summary["policies"].items():
        delays = ", ".join(f"{x}%: {v:+.1%}" for x, v in entry["delay_reduction"].items())
        log.info(
            "%-10s quality improvement %+.1f%%, total loss reduction %+.1f%%; delay reduction %s",
            name,
            100 * entry["quality_improvement"],
            100 * entry["total_loss_reduction"],
            delays,
        )
    return 0


def _cmd_fidelity(args: argparse.Namespace) -> int:
    from slaq.metrics import fidelity
    from slaq.traces import write_json_atomic

    named = [args.live, args.simulated, *(args.calibrate or []), *(args.predict or [])]
    checks.require_ok_runs([Path(d) for d in named if d])
    if args.calibrate:
        from slaq.fidelity import fidelity_out_of_sample

        oos = fidelity_out_of_sample(
            [Path(d) for d in args.calibrate], [Path(d) for d in args.predict or []], args.baseline
        )
        write_json_atomic(oos, Path(args.out))
        log.info("out-of-sample fidelity errors: %s", oos["errors"])
        return 0
    if not (args.live and args.simulated):
        raise ValueError("give LIVE SIMULATED, or --calibrate RUN_DIR ... --predict RUN_DIR ...")
    result = fidelity(Path(args.live), Path(args.simulated))
    write_json_atomic(result, Path(args.out))
    log.info(
        "%s: mean |live - simulated| quality %.3f, 90%% delay %.1f s",
        result["policy"],
        result["mad_quality"],
        result["mad_delay90_s"],
    )
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    import os

    from slaq.summary import write_summary

    out = Path(args.out)
    figures = [Path(os.path.relpath(f, out.parent)) for f in args.figures]
    write_summary(
        out,
        live=args.live,
        sim=args.sim,
        sweep=args.sweep,
        premise=args.premise,
        scaling=args.scaling,
        runs=args.runs,
        overhead=args.overhead,
        fidelity=args.fidelity,
        prediction=args.prediction,
        figures=figures,
        config_name=args.name,
    )
    log.info("wrote %s", out)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from slaq import bench
    from slaq.traces import write_json_atomic

    if args.kind == "overhead":
        checks.check_overhead_args(args.jobs, args.cores, args.repeat, args.min_cores)
        result = bench.overhead(
            args.jobs,
            args.cores,
            repeat=args.repeat,
            predictor=args.predictor,
            min_cores=args.min_cores,
        )
    else:
        result = bench.run(args)  # epoch, prediction: validated in slaq.bench
    write_json_atomic(result, Path(args.out))
    log.info("wrote %s", args.out)
    return 0


def _add_policies(sub: Any) -> None:
    """The ``slaq policies`` sub-command."""
    p = sub.add_parser("policies", help="list registered scheduling policies")
    p.set_defaults(func=_cmd_policies)


def _add_workload(sub: Any) -> None:
    """The ``slaq workload`` sub-command."""
    p = sub.add_parser("workload", help="draw a Poisson workload file from a config section")
    p.add_argument("--config", help="YAML config with the section")
    p.add_argument("--key", default="workload", help="dotted section name, e.g. simulation")
    p.add_argument("--spec", help="the section itself as JSON (instead of --config)")
    p.add_argument("--name", help="workload name (default: from the config)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="workload YAML to write")
    p.set_defaults(func=_cmd_workload)


def _add_compare(sub: Any) -> None:
    """The ``slaq compare`` sub-command."""
    p = sub.add_parser("compare", help="quality and delay of runs against a baseline")
    p.add_argument("runs", nargs="+", help="run directories (one per policy, or per seed)")
    p.add_argument("--baseline", default="fair")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.set_defaults(func=_cmd_compare)


def _add_fidelity(sub: Any) -> None:
    """The ``slaq fidelity`` sub-command."""
    p = sub.add_parser("fidelity", help="simulator against live runs (replay or out of sample)")
    p.add_argument("live", nargs="?", help="live run directory")
    p.add_argument("simulated", nargs="?", help="replay of it (slaq simulate --trace LIVE)")
    p.add_argument("--calibrate", nargs="+", metavar="RUN_DIR", help="live runs to calibrate on")
    p.add_argument("--predict", nargs="+", metavar="RUN_DIR", help="live runs to predict")
    p.add_argument("--baseline", default="fair")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_fidelity)


def _add_summary(sub: Any) -> None:
    """The ``slaq summary`` sub-command."""
    p = sub.add_parser("summary", help="Markdown summary beside the paper's numbers")
    p.add_argument("--live", nargs="*", default=[], help="metrics JSON of live comparisons")
    p.add_argument("--sim", nargs="*", default=[], help="metrics JSON of simulated comparisons")
    p.add_argument("--fidelity", nargs="*", default=[])
    p.add_argument("--sweep", help="sweep.json of slaq sweep report")
    p.add_argument("--premise", help="premise benchmark JSON (benchmarks/premise.py)")
    p.add_argument("--scaling", help="scaling benchmark JSON (benchmarks/scaling.py)")
    p.add_argument("--runs", nargs="*", default=[], help="live run directories (one row each)")
    p.add_argument("--overhead")
    p.add_argument("--prediction")
    p.add_argument("--figures", nargs="*", default=[])
    p.add_argument("--name", default="")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_summary)


def _add_bench(sub: Any) -> None:
    """The ``slaq bench`` sub-command."""
    p = sub.add_parser("bench", help="scheduler benchmarks")
    p.add_argument("kind", choices=["overhead", "epoch", "prediction"])
    p.add_argument("--jobs", type=checks.int_list, default=[100, 1000, 4000])
    p.add_argument("--cores", type=checks.int_list, default=[1024, 4096, 16384])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--predictor", default="geometric", choices=["geometric", "curvefit"])
    p.add_argument("--min-cores", type=int, default=0, help="SLAQ floor per job (overhead)")
    p.add_argument(
        "--trace",
        nargs="*",
        default=[],
        metavar="RUN_DIR",
        help="prediction: also score recorded runs' loss curves, per algorithm",
    )
    p.add_argument("--library", help="prediction: curve library parquet (template_id, loss)")
    p.add_argument("--live-root", default="results/live", help="prediction: live run dirs")
    p.add_argument("--reference-jobs", type=int, default=100, help="epoch: jobs fitted by scipy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    """The full ``slaq`` argument parser."""
    parser = argparse.ArgumentParser(prog="slaq", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_policies(sub)
    _add_workload(sub)
    _add_compare(sub)
    _add_fidelity(sub)
    _add_summary(sub)
    _add_bench(sub)
    for module_name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slaq`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except checks.USER_ERRORS as exc:
        log.error("%s", " ".join(str(exc).split()))  # one line, whatever the message
        return 2
    except KeyboardInterrupt as exc:
        # Terminated (slaq.spark.signals) carries the signal; a bare one is Ctrl-C.
        signum = int(getattr(exc, "signum", signal.SIGINT))
        log.error("interrupted by %s: stopped, no output written", signal.Signals(signum).name)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
