"""``slaq run`` (a workload live on Spark) and ``slaq cluster up|down|status``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("slaq.spark")

DEFAULT_STATE = Path("results/.cluster/state.json")


def _cmd_run(args: argparse.Namespace) -> int:
    from slaq.policy import load_policy, parse_policy_args
    from slaq.spark.cluster import (
        AttachedCluster,
        ClusterError,
        LocalSparkCluster,
        Terminated,
        signals_as_exceptions,
    )
    from slaq.spark.engine import LiveRunError, run_live
    from slaq.workload import load_workload

    workload = load_workload(args.workload)
    params = parse_policy_args(args.policy_arg)
    policy = load_policy(args.policy, **params)
    out = Path(args.out)
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

    def run(cluster: Any, total_cores: int) -> None:
        run_live(
            workload,
            policy,
            master_url=cluster.master_url,
            total_cores=total_cores,
            epoch_s=args.epoch,
            seed=args.seed,
            out_dir=out,
            data_dir=Path(args.data_dir) if args.data_dir else None,
            progress=not args.quiet,
            cpu_budget=not args.no_cpu_budget,
            physical_cores=args.physical_cores,
            executor_memory=args.worker_memory,
            webui_url=cluster.webui_url,
            max_time_s=args.max_time,
            task_log=args.task_log,
            replan_on_events=args.replan == "events",
            config=config,
        )

    try:
        with signals_as_exceptions():
            if args.cluster == "local":
                log_dir = out.with_name(out.name + ".spark-logs")
                with LocalSparkCluster(
                    workers=args.workers,
                    cores_per_worker=args.cores_per_worker,
                    memory_per_worker=args.worker_memory,
                    log_dir=log_dir,
                ) as cluster:
                    run(cluster, cluster.total_cores)
            else:
                with AttachedCluster(args.cluster, args.master_webui) as cluster:
                    run(cluster, cluster.capacity())
    except Terminated as exc:
        log.error("%s: cluster and SparkContext stopped, no output written", exc)
        return 128 + exc.signum
    except (LiveRunError, ClusterError) as exc:
        log.error("live run failed: %s (no output written to %s)", exc, out)
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
    import psutil

    from slaq.spark.cluster import (
        ClusterError,
        LocalSparkCluster,
        alive_cores,
        alive_workers,
        master_status,
        stop_pids,
    )
    from slaq.traces import write_json_atomic

    state_path = Path(args.state)
    if args.action == "up":
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
            write_json_atomic(cluster.state(), state_path)
        except BaseException:
            cluster.stop()
            raise
        log.info(
            "cluster up in %.1fs: master %s, web UI %s, %d cores, pids %s (state %s)",
            cluster.startup_s or 0.0,
            cluster.master_url,
            cluster.webui_url,
            cluster.total_cores,
            cluster.pids,
            state_path,
        )
        return 0
    if args.action == "down":
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
        log.info("cluster down: stopped pids %s", ours)
        return 0
    # status
    webui = args.webui or _read_state(state_path)["webui_url"]
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
