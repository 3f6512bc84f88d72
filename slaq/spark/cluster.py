"""Local Spark standalone cluster lifecycle, or attachment to an existing master.

See docs/design.md §6 and §7.

:class:`LocalSparkCluster` starts one master and ``W`` workers through PySpark's own
``bin/spark-class`` (the PyPI package has no ``sbin`` scripts), every one bound to 127.0.0.1 on
free ports, with shared-secret authentication (:mod:`slaq.spark.auth`), and waits until the
master's JSON endpoint lists every worker ALIVE. It is torn down on normal exit, on an exception
and on SIGINT/SIGTERM (turned into :class:`Terminated`, :mod:`slaq.spark.signals`); the JVMs
also get SIGTERM from the kernel if the Python process is SIGKILLed (``PR_SET_PDEATHSIG``).
:class:`AttachedCluster` reads the capacity of a master started elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from slaq.spark.auth import append_flags, daemon_env, generate_secret
from slaq.spark.procs import (
    JAVA_PACKAGE,
    JVM_FLAGS,
    LOOPBACK,
    ClusterError,
    JavaMissingError,
    alive_cores,
    alive_workers,
    check_java,
    die_with_parent,
    free_port,
    is_loopback_master,
    master_status,
    spark_home,
    stop_pids,
    tail,
)
from slaq.spark.signals import Terminated, signals_as_exceptions

# Also re-exported for callers that import them from here.
__all__ = ["JAVA_PACKAGE", "AttachedCluster", "ClusterError", "JavaMissingError"]
__all__ += ["LocalSparkCluster", "Terminated", "is_loopback_master", "signals_as_exceptions"]

log = logging.getLogger(__name__)

DEFAULT_MASTER_WEBUI_PORT = 8080
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


# --------------------------------------------------------------------------- clusters


class LocalSparkCluster:
    """A Spark standalone master and ``workers`` workers on 127.0.0.1, as a context manager.

    ``auth=True`` (the default) turns on Spark's shared-secret authentication with a fresh
    secret: pass :attr:`secret` to :func:`slaq.spark.session.start_spark_context`. ``detach=True``
    starts the JVMs in their own session without the parent-death signal, so they outlive this
    process (``slaq cluster up``); stop them with :func:`stop_pids`.
    """

    def __init__(
        self,
        workers: int = 2,
        cores_per_worker: int = 4,
        memory_per_worker: str = "2g",
        log_dir: Path | None = None,
        *,
        ready_timeout_s: float = 120.0,
        detach: bool = False,
        auth: bool = True,
    ) -> None:
        if workers < 1 or cores_per_worker < 1:
            raise ClusterError("a local cluster needs at least one worker with one core")
        self.workers = workers
        self.cores_per_worker = cores_per_worker
        self.memory_per_worker = memory_per_worker
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="slaq-cluster-"))
        self.ready_timeout_s = ready_timeout_s
        self.detach = detach
        self.startup_s: float | None = None
        self._secret = generate_secret() if auth else None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []
        self._master_url: str | None = None
        self._webui_url: str | None = None
        self._stack: contextlib.ExitStack | None = None

    def __repr__(self) -> str:  # never the secret
        return f"LocalSparkCluster(workers={self.workers}, cores={self.cores_per_worker})"

    @property
    def secret(self) -> str | None:
        """The shared secret every client must present (None: authentication off)."""
        return self._secret

    # ------------------------------------------------------------------ properties

    @property
    def master_url(self) -> str:
        """``spark://127.0.0.1:PORT`` of the running master."""
        if self._master_url is None:
            raise ClusterError("the local cluster is not running")
        return self._master_url

    @property
    def webui_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the master's web UI (and JSON endpoint)."""
        if self._webui_url is None:
            raise ClusterError("the local cluster is not running")
        return self._webui_url

    @property
    def total_cores(self) -> int:
        """Task slots the cluster was started with."""
        return self.workers * self.cores_per_worker

    @property
    def pids(self) -> list[int]:
        """PIDs of the master (first) and the workers."""
        return [p.pid for p in self._procs]

    @property
    def master_pid(self) -> int:
        """PID of the master JVM."""
        return self.pids[0]

    @property
    def worker_pids(self) -> list[int]:
        """PIDs of the worker JVMs."""
        return self.pids[1:]

    def status(self) -> dict[str, Any]:
        """The master's JSON status."""
        return master_status(self.webui_url)

    def capacity(self) -> int:
        """Cores of the workers that are ALIVE right now."""
        return alive_cores(self.status())

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalSparkCluster:
        stack = contextlib.ExitStack()
        stack.enter_context(signals_as_exceptions())
        try:
            self.start()
        except BaseException:
            self.stop()
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            if self._stack is not None:
                self._stack.close()
                self._stack = None

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        script = spark_home() / "bin" / "spark-class"
        log_path = self.log_dir / f"{name}.log"
        self._logs.append(log_path)
        with open(log_path, "wb") as out:  # one log per run, not appended across runs
            proc = subprocess.Popen(
                ["bash", str(script), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.log_dir,
                # Own session: a terminal's Ctrl-C reaches only us, and we stop the JVMs in
                # order. The parent-death signal covers a SIGKILLed parent (docs/design.md §7).
                start_new_session=True,
                preexec_fn=None if self.detach else die_with_parent,
            )
        self._procs.append(proc)
        log.debug("started %s as pid %d (log %s)", name, proc.pid, log_path)

    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SPARK_HOME=str(spark_home()),
            SPARK_LOCAL_IP=LOOPBACK,
            SPARK_NO_DAEMONIZE="1",
            PYSPARK_PYTHON=sys.executable,
            SPARK_LOG_DIR=str(self.log_dir),
            SPARK_WORKER_DIR=str(self.log_dir / "work"),
        )
        append_flags(env, "SPARK_DAEMON_JAVA_OPTS", JVM_FLAGS)
        # The REST submission server would take the fixed port 6066 and bypass RPC auth.
        append_flags(env, "SPARK_MASTER_OPTS", "-Dspark.master.rest.enabled=false")
        return env

    def _worker_args(self, i: int) -> list[str]:
        return [
            WORKER_CLASS,
            "--host",
            LOOPBACK,
            "--port",
            str(free_port()),
            "--webui-port",
            str(free_port()),
            "--cores",
            str(self.cores_per_worker),
            "--memory",
            self.memory_per_worker,
            "--work-dir",
            str(self.log_dir / f"work-{i}"),
            self.master_url,
        ]

    def start(self) -> LocalSparkCluster:
        """Launch the master and workers and wait until every worker is ALIVE."""
        if self._procs:
            raise ClusterError("the local cluster is already running")
        check_java()
        t0 = time.monotonic()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self._base_env()
        master_port, webui_port = free_port(), free_port()
        self._master_url = f"spark://{LOOPBACK}:{master_port}"
        self._webui_url = f"http://{LOOPBACK}:{webui_port}"
        master_args = ["--host", LOOPBACK, "--port", str(master_port)]
        self._spawn(
            "master",
            [MASTER_CLASS, *master_args, "--webui-port", str(webui_port)],
            daemon_env(env, self._secret, "SPARK_MASTER_OPTS"),
        )
        # A worker that registers before the master is elected leader is ignored and retries
        # only after 5-15 s. Workers take longer to boot than the master needs from opening its
        # RPC port to being ALIVE, so they start as soon as that port accepts connections.
        self._wait_port(master_port)
        worker_env = daemon_env(env, self._secret, "SPARK_WORKER_OPTS")
        for i in range(self.workers):
            self._spawn(f"worker-{i}", self._worker_args(i), worker_env)
        self._wait_ready(workers=self.workers)
        self.startup_s = time.monotonic() - t0
        log.info(
            "local Spark cluster up in %.1fs: %s, %d workers x %d cores, authentication %s "
            "(logs in %s)",
            self.startup_s,
            self.master_url,
            self.workers,
            self.cores_per_worker,
            "on" if self._secret else "OFF",
            self.log_dir,
        )
        return self

    def _check_alive(self) -> None:
        for proc, log_path in zip(self._procs, self._logs, strict=True):
            if proc.poll() is not None:
                raise ClusterError(
                    f"Spark process {log_path.stem} exited with status {proc.returncode} during "
                    f"startup; last lines of {log_path}:\n{tail(log_path)}"
                )

    def _wait_port(self, port: int) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            self._check_alive()
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 1.0):
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"Spark master did not open port {port} within {self.ready_timeout_s:.0f}s; "
                    f"last lines of {self._logs[0]}:\n{tail(self._logs[0])}"
                )
            time.sleep(0.2)

    def _wait_ready(self, workers: int) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        last_error = "no answer yet"
        while True:
            self._check_alive()
            try:
                status = master_status(self.webui_url, timeout_s=2.0)
                alive = alive_workers(status)
                if status.get("status") == "ALIVE" and alive >= workers:
                    # Spark moves to the next port if ours was taken in the meantime.
                    self._master_url = str(status.get("url") or self._master_url)
                    return
                last_error = f"{alive} of {workers} workers ALIVE"
            except ClusterError as exc:
                last_error = str(exc)
            if time.monotonic() > deadline:
                tails = "\n".join(f"{p}:\n{tail(p)}" for p in self._logs)
                raise ClusterError(
                    f"local Spark cluster not ready after {self.ready_timeout_s:.0f}s "
                    f"({last_error}); logs:\n{tails}"
                )
            # Polling an HTTP endpoint against a deadline; the short pause just paces requests.
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop workers, then the master, by PID (SIGTERM, wait, SIGKILL); idempotent."""
        if not self._procs:
            return
        procs, self._procs = self._procs, []
        # Workers first so their executors are stopped while the master still answers.
        stop_pids([p.pid for p in reversed(procs)])
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        log.info("local Spark cluster stopped (pids %s)", [p.pid for p in procs])
        self._master_url = self._webui_url = None
        self._logs = []

    def state(self) -> dict[str, Any]:
        """What ``slaq cluster up`` records so ``down`` and ``status`` can find the cluster."""
        return {
            "master_url": self.master_url,
            "webui_url": self.webui_url,
            "pids": self.pids,
            "workers": self.workers,
            "cores_per_worker": self.cores_per_worker,
            "memory_per_worker": self.memory_per_worker,
            "log_dir": str(self.log_dir),
            "started": time.time(),
        }


class AttachedCluster:
    """A standalone master started elsewhere; capacity comes from its JSON endpoint.

    The web UI defaults to the master's host on port 8080 (Spark's default) unless given.
    """

    def __init__(
        self, master_url: str, webui_url: str | None = None, *, secret: str | None = None
    ) -> None:
        parsed = urlparse(master_url)
        if parsed.scheme != "spark" or not parsed.hostname:
            raise ClusterError(f"{master_url!r} is not a standalone master URL spark://HOST:PORT")
        self.master_url = master_url
        self.webui_url = webui_url or f"http://{parsed.hostname}:{DEFAULT_MASTER_WEBUI_PORT}"
        self._secret = secret

    def __repr__(self) -> str:  # never the secret
        return f"AttachedCluster({self.master_url!r})"

    @property
    def secret(self) -> str | None:
        """The cluster's shared secret, if it authenticates (``--auth-secret-file``)."""
        return self._secret

    @property
    def pids(self) -> list[int]:
        """No processes are owned in attach mode."""
        return []

    def status(self) -> dict[str, Any]:
        """The master's JSON status."""
        return master_status(self.webui_url)

    def capacity(self) -> int:
        """Cores of the workers that are ALIVE right now."""
        return alive_cores(self.status())

    @property
    def total_cores(self) -> int:
        """Cores of the ALIVE workers (read now)."""
        return self.capacity()

    def __enter__(self) -> AttachedCluster:
        if self.capacity() <= 0:
            raise ClusterError(f"Spark master {self.master_url} has no ALIVE workers")
        return self

    def __exit__(self, *exc: object) -> None:
        return None
