"""``slaq run`` (a workload live on Spark) and ``slaq cluster up|down|status``."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger("slaq.spark")

DEFAULT_STATE = Path("results/.cluster/state.json")


def _cmd_run(args: argparse.Namespace) -> int:
    from slaq.cli_checks import check_out_dir, load_workload_file
    from slaq.datasets import check_dataset_names
    from slaq.policy import load_policy, parse_policy_args
    from slaq.spark.auth import read_secret_file

    # Every input is checked before a cluster starts (a cluster costs about 30 s here).
    workload = load_workload_file(args.workload)
    check_dataset_names(sorted({spec.dataset for spec in workload.jobs}))
    params = parse_policy_args(args.policy_arg)
    policy = load_policy(args.policy, **params)
    out = Path(args.out)
    check_out_dir(out)
    if args.cluster == "local" and args.auth_secret_file:
        raise ValueError(
            "--auth-secret-file is for --cluster spark://...; a local cluster makes one"
        )
    secret = read_secret_file(Path(args.auth_secret_file)) if args.auth_secret_file else None
    config: dict[str, Any] = {
        "workload": str(args.workload),
        "workload_name": workload.name,
        "policy": args.policy,
        "policy_args": params,
        "cluster": args.cluster,
        "workers": args.workers,
        "cores_per_worker": args.cores_per_worker,
        "worker_memory": args.worker_memory,
        "epoch_s": args.epoch,
        "replan": args.replan,
        "cpu_budget": not args.no_cpu_budget,
    }
    return _run_on_cluster(args, workload, policy, out, config, secret)


def _live_options(args: argparse.Namespace, out: Path, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "epoch_s": args.epoch,
        "seed": args.seed,
        "out_dir": out,
        "data_dir": Path(args.data_dir) if args.data_dir else None,
        "progress": not args.quiet,
        "cpu_budget": not args.no_cpu_budget,
        "physical_cores": args.physical_cores,
        "executor_memory": args.worker_memory,
        "max_time_s": args.max_time,
        "task_log": args.task_log,
        "replan_on_events": args.replan == "events",
        "driver_host": args.driver_host,
        "config": config,
    }


def _run_on_cluster(
    args: argparse.Namespace,
    workload: Any,
    policy: Any,
    out: Path,
    config: dict[str, Any],
    secret: str | None,
) -> int:
    """Start or attach to the cluster, run, tear down; the exit status of ``slaq run``."""
    import psutil

    from slaq.spark.cluster import ClusterError, Terminated
    from slaq.spark.engine import LiveRunError
    from slaq.spark.signals import signals_as_exceptions

    options = _live_options(args, out, config)
    before = [p.pid for p in psutil.Process().children()]
    try:
        try:
            with signals_as_exceptions():
                _run_in(cluster_for(args, out, secret), workload, policy, options)
        finally:
            _reap(before)  # before anything says "stopped"
    except Terminated as exc:
        log.error("%s: cluster and SparkContext stopped, no output written", exc)
        return 128 + exc.signum
    except (LiveRunError, ClusterError) as exc:
        log.error("live run failed: %s (no output written to %s)", exc, out)
        return 1
    return _exit_status(out)


def cluster_for(args: argparse.Namespace, out: Path, secret: str | None) -> Any:
    """The local cluster to start (logs in ``<out>.spark-logs``) or the master to attach to."""
    from slaq.spark.cluster import AttachedCluster, LocalSparkCluster

    if args.cluster != "local":
        return AttachedCluster(args.cluster, args.master_webui, secret=secret)
    log_dir = out.with_name(out.name + ".spark-logs")
    shutil.rmtree(log_dir, ignore_errors=True)  # one run's logs, not appended across runs
    return LocalSparkCluster(
        workers=args.workers,
        cores_per_worker=args.cores_per_worker,
        memory_per_worker=args.worker_memory,
        log_dir=log_dir,
    )


def _run_in(cluster: Any, workload: Any, policy: Any, options: dict[str, Any]) -> None:
    from slaq.spark.engine import run_live

    with cluster:
        run_live(
            workload,
            policy,
            master_url=cluster.master_url,
            total_cores=cluster.total_cores,
            webui_url=cluster.webui_url,
            auth_secret=cluster.secret,
            **options,
        )


def _reap(before: list[int]) -> None:
    """Stop any process this command started that teardown left running (a last resort)."""
    from slaq.spark.procs import children_since, stop_pids

    left = [p.pid for p in children_since(before)]
    if left:
        log.warning("stopping processes teardown left running: %s", left)
        stop_pids(left, grace_s=10)


def _exit_status(out: Path) -> int:
    """0 for a run whose every job finished; 1 (run kept for inspection, marked failed) else."""
    from slaq.traces import read_run

    status = read_run(out).get("exit_status")
    if status != "ok":
        # run.json says so: slaq compare, fidelity and simulate --trace refuse it, and under
        # Snakemake the non-zero exit marks the rule failed and removes its output.
        log.error("run FAILED (%s); %s kept for inspection only", status, out)
        return 1
    log.info("run complete: %s", out)
    return 0


def _read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no cluster state file {path} (start one with `slaq cluster up`)"
        ) from None


def _cmd_cluster(args: argparse.Namespace) -> int:
    state_path = Path(args.state)
    # Clients of a detached cluster need its secret: beside the state file, mode 0600.
    secret_path = state_path.with_name(state_path.name + ".secret")
    if args.action == "up":
        return _cluster_up(args, state_path, secret_path)
    if args.action == "down":
        return _cluster_down(state_path, secret_path)
    return _cluster_status(args.webui or _read_state(state_path)["webui_url"])


def _cluster_up(args: argparse.Namespace, state_path: Path, secret_path: Path) -> int:
    from slaq.spark.auth import write_secret_file
    from slaq.spark.cluster import LocalSparkCluster
    from slaq.traces import write_json_atomic

    if state_path.exists():
        raise ValueError(f"{state_path} exists: run `slaq cluster down` first")
    cluster = LocalSparkCluster(
        workers=args.workers,
        cores_per_worker=args.cores_per_worker,
        memory_per_worker=args.worker_memory,
        log_dir=Path(args.log_dir) if args.log_dir else state_path.parent / "logs",
        detach=True,
    )
    try:
        cluster.start()
        write_secret_file(secret_path, str(cluster.secret))
        write_json_atomic(cluster.state(), state_path)
    except BaseException:
        cluster.stop()
        secret_path.unlink(missing_ok=True)
        raise
    log.info(
        "cluster up in %.1fs: master %s, web UI %s, %d cores, pids %s (state %s; clients "
        "pass --auth-secret-file %s)",
        cluster.startup_s or 0.0,
        cluster.master_url,
        cluster.webui_url,
        cluster.total_cores,
        cluster.pids,
        state_path,
        secret_path,
    )
    return 0


def _cluster_down(state_path: Path, secret_path: Path) -> int:
    import psutil

    from slaq.spark.cluster import stop_pids

    state = _read_state(state_path)
    ours = []
    for pid in state.get("pids", []):
        try:
            cmdline = " ".join(psutil.Process(pid).cmdline())
        except psutil.NoSuchProcess:
            continue
        # A recycled PID must not be killed: only stop the Spark daemons we started.
        if "org.apache.spark.deploy" in cmdline:
            ours.append(pid)
    stop_pids(ours)
    state_path.unlink(missing_ok=True)
    secret_path.unlink(missing_ok=True)
    log.info("cluster down: stopped pids %s", ours)
    return 0


def _cluster_status(webui: str) -> int:
    from slaq.spark.cluster import ClusterError, alive_cores, alive_workers, master_status

    try:
        status = master_status(webui)
    except ClusterError as exc:
        log.error("%s", exc)
        return 1
    log.info(
        "master %s (%s): %d workers ALIVE, %d cores (%d in use), %d running applications",
        status.get("url"),
        status.get("status"),
        alive_workers(status),
        alive_cores(status),
        int(status.get("coresused", 0)),
        len(status.get("activeapps", [])),
    )
    for worker in status.get("workers", []):
        log.info(
            "  worker %s %s: %s cores, %s used",
            worker.get("id"),
            worker.get("state"),
            worker.get("cores"),
            worker.get("coresused"),
        )
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Add ``run`` and ``cluster`` to the ``slaq`` command."""
    p = subparsers.add_parser("run", help="run a workload live on Spark under a policy")
    p.add_argument("--workload", required=True, help="workload YAML file")
    p.add_argument("--policy", required=True, help="policy name or package.module:Class")
    p.add_argument("--policy-arg", action="append", default=[], metavar="K=V")
    p.add_argument(
        "--cluster",
        default="local",
        help="'local' (start a standalone cluster on 127.0.0.1) or spark://HOST:PORT",
    )
    p.add_argument("--master-webui", help="web UI URL of an attached master (default port 8080)")
    p.add_argument(
        "--auth-secret-file",
        help="attached master: file (mode 0600) with its spark.authenticate secret",
    )
    p.add_argument(
        "--driver-host",
        help="attached master: address the driver binds to (default: the route to the master)",
    )
    p.add_argument("--workers", type=int, default=2, help="local cluster: workers")
    p.add_argument("--cores-per-worker", type=int, default=4, help="local cluster: task slots")
    p.add_argument("--worker-memory", default="2g", help="worker and executor memory")
    p.add_argument("--epoch", type=float, default=3.0, help="scheduling epoch in seconds")
    p.add_argument(
        "--replan",
        choices=["events", "ticks"],
        default="events",
        help="re-plan on arrivals and job ends as well as at epoch ticks, or only at ticks",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--data-dir", help="dataset cache; also keeps the data blocks across runs")
    p.add_argument(
        "--no-cpu-budget", action="store_true", help="enforce task counts only, no CPU tokens"
    )
    p.add_argument(
        "--physical-cores", type=int, help="CPUs behind the slots (default: this machine's)"
    )
    p.add_argument("--max-time", type=float, help="fail if the run takes longer (seconds)")
    p.add_argument("--task-log", action="store_true", help="also write Spark's task records")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    p = subparsers.add_parser("cluster", help="a local Spark standalone cluster for manual use")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--state", default=str(DEFAULT_STATE), help="state file with PIDs and URLs")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cores-per-worker", type=int, default=4)
    p.add_argument("--worker-memory", default="2g")
    p.add_argument("--log-dir", help="cluster logs (default: next to the state file)")
    p.add_argument("--webui", help="status: master web UI URL instead of the state file's")
    p.set_defaults(func=_cmd_cluster)
