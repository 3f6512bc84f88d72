"""Local Spark standalone cluster lifecycle, or attachment to an existing master.

See docs/design.md §7.

:class:`LocalSparkCluster` starts one master and ``W`` workers through PySpark's own
``bin/spark-class`` (the PyPI package has no ``sbin`` scripts), every one bound to 127.0.0.1 on
free ports, and waits until the master's JSON endpoint lists every worker ALIVE. It is torn down
on normal exit, on an exception and on SIGINT/SIGTERM (turned into :class:`Terminated`); the
JVMs also get SIGTERM from the kernel if the Python process is SIGKILLed
(``PR_SET_PDEATHSIG``). :class:`AttachedCluster` reads the capacity of a master started elsewhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil

log = logging.getLogger(__name__)

JAVA_PACKAGE = "openjdk-17-jre-headless"
LOOPBACK = "127.0.0.1"
DEFAULT_MASTER_WEBUI_PORT = 8080
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
_PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """The Spark cluster could not be started, reached or stopped."""


class JavaMissingError(ClusterError):
    """No usable Java runtime (Spark 4 needs Java 17 or 21)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived; raised in the main thread so ``finally`` blocks clean up."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


# --------------------------------------------------------------------------- signals

_signal_lock = threading.Lock()
_signal_depth = 0
_signal_fired = False


@contextlib.contextmanager
def signals_as_exceptions(
    signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into :class:`Terminated` in the main thread; restore handlers after.

    Only the first signal raises: later ones are logged and ignored, so a second Ctrl-C cannot
    interrupt the teardown the first one started. Outside the main thread this does nothing
    (Python only delivers signals there).
    """
    global _signal_depth, _signal_fired
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        global _signal_fired
        with _signal_lock:
            first = not _signal_fired
            _signal_fired = True
        if first:
            # The exception can land where it is swallowed or where teardown blocks (inside a
            # py4j call, say); the watchdog guarantees the process and its JVMs still go.
            threading.Thread(
                target=_teardown_watchdog, args=(signum,), daemon=True, name="teardown-watchdog"
            ).start()
            raise Terminated(signum)
        log.warning("%s received again; still shutting down", signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in signums}
    with _signal_lock:
        _signal_depth += 1
    try:
        yield
    finally:
        with _signal_lock:
            _signal_depth -= 1
            if _signal_depth == 0:
                _signal_fired = False
        for signum, previous in old.items():
            signal.signal(signum, previous)


TEARDOWN_GRACE_S = 45.0


def _teardown_watchdog(signum: int, grace_s: float = TEARDOWN_GRACE_S) -> None:
    """If orderly teardown has not ended the process after ``grace_s``, kill its children."""
    time.sleep(grace_s)  # a deadline, not synchronization: the process normally exits first
    log.error(
        "teardown did not finish %.0f s after %s; killing child processes",
        grace_s,
        signal.Signals(signum).name,
    )
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=10)
    os._exit(128 + signum)


# --------------------------------------------------------------------------- helpers


def check_java() -> str:
    """Path of a working ``java`` (17 or newer); :class:`JavaMissingError` naming the package."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    found = shutil.which("java")
    if found:
        candidates.append(found)
    hint = (
        f"Spark 4 needs a Java 17 or 21 runtime; on Debian/Ubuntu install it with "
        f"`apt-get install {JAVA_PACKAGE}`"
    )
    for java in candidates:
        if not os.access(java, os.X_OK):
            continue
        try:
            out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        text = out.stderr + out.stdout
        match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
        if out.returncode != 0 or not match:
            continue
        major = int(match.group(1))
        if major == 1 and match.group(2):
            major = int(match.group(2))
        if major < 17:
            raise JavaMissingError(f"{java} is Java {major}. {hint}")
        return java
    raise JavaMissingError(f"no usable `java` on PATH or in JAVA_HOME. {hint}")


def spark_home() -> Path:
    """The Spark installation shipped inside the pyspark package."""
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the thread that started it dies (even by SIGKILL)."""
    parent = os.getppid()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def master_status(webui_url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The master's JSON status (``/json/``): workers, cores, applications."""
    url = webui_url.rstrip("/") + "/json/"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.loads(response.read().decode())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ClusterError(f"cannot read Spark master status from {url}: {exc}") from exc


def alive_cores(status: dict[str, Any]) -> int:
    """Cores of the ALIVE workers in a master status."""
    return sum(
        int(w.get("cores", 0)) for w in status.get("workers", []) if w.get("state") == "ALIVE"
    )


def alive_workers(status: dict[str, Any]) -> int:
    """Number of ALIVE workers in a master status."""
    return sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"  ({path}: unreadable)"
    return "\n".join(f"  {line}" for line in text[-lines:])


def stop_pids(pids: Sequence[int], grace_s: float = 15.0) -> None:
    """Stop processes and their descendants by PID: SIGTERM, wait, then SIGKILL."""
    procs: list[psutil.Process] = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            # Executors are children of their worker; collect them before the worker goes.
            procs.extend([proc, *proc.children(recursive=True)])
        except psutil.NoSuchProcess:
            continue
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        log.warning("pid %d did not stop on SIGTERM; killing it", proc.pid)
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


# --------------------------------------------------------------------------- clusters


class LocalSparkCluster:
    """A Spark standalone master and ``workers`` workers on 127.0.0.1, as a context manager.

    ``detach=True`` starts the JVMs in their own session without the parent-death signal, so
    they outlive this process (``slaq cluster up``); stop them with :func:`stop_pids`.
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
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []
        self._master_url: str | None = None
        self._webui_url: str | None = None
        self._stack: contextlib.ExitStack | None = None

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
        with open(log_path, "ab") as out:
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
                preexec_fn=None if self.detach else _die_with_parent,
            )
        self._procs.append(proc)
        log.debug("started %s as pid %d (log %s)", name, proc.pid, log_path)

    def start(self) -> LocalSparkCluster:
        """Launch the master and workers and wait until every worker is ALIVE."""
        if self._procs:
            raise ClusterError("the local cluster is already running")
        check_java()
        t0 = time.monotonic()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        home = spark_home()
        env = dict(os.environ)
        env.update(
            SPARK_HOME=str(home),
            SPARK_LOCAL_IP=LOOPBACK,
            SPARK_NO_DAEMONIZE="1",
            PYSPARK_PYTHON=sys.executable,
            SPARK_LOG_DIR=str(self.log_dir),
            SPARK_WORKER_DIR=str(self.log_dir / "work"),
        )
        master_port, webui_port = free_port(), free_port()
        self._master_url = f"spark://{LOOPBACK}:{master_port}"
        self._webui_url = f"http://{LOOPBACK}:{webui_port}"
        # The REST submission server would take the fixed port 6066; nothing here needs it.
        master_env = dict(env)
        master_env["SPARK_MASTER_OPTS"] = (
            env.get("SPARK_MASTER_OPTS", "") + " -Dspark.master.rest.enabled=false"
        ).strip()
        self._spawn(
            "master",
            [
                MASTER_CLASS,
                "--host",
                LOOPBACK,
                "--port",
                str(master_port),
                "--webui-port",
                str(webui_port),
            ],
            master_env,
        )
        # A worker that registers before the master is elected leader is ignored and retries
        # only after 5-15 s. Workers take longer to boot than the master needs from opening its
        # RPC port to being ALIVE, so they start as soon as that port accepts connections.
        self._wait_port(master_port)
        for i in range(self.workers):
            self._spawn(
                f"worker-{i}",
                [
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
                    self._master_url,
                ],
                env,
            )
        self._wait_ready(workers=self.workers)
        self.startup_s = time.monotonic() - t0
        log.info(
            "local Spark cluster up in %.1fs: %s, %d workers x %d cores (logs in %s)",
            self.startup_s,
            self.master_url,
            self.workers,
            self.cores_per_worker,
            self.log_dir,
        )
        return self

    def _check_alive(self) -> None:
        for proc, log_path in zip(self._procs, self._logs, strict=True):
            if proc.poll() is not None:
                raise ClusterError(
                    f"Spark process {log_path.stem} exited with status {proc.returncode} during "
                    f"startup; last lines of {log_path}:\n{_tail(log_path)}"
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
                    f"last lines of {self._logs[0]}:\n{_tail(self._logs[0])}"
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
                tails = "\n".join(f"{p}:\n{_tail(p)}" for p in self._logs)
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

    def __init__(self, master_url: str, webui_url: str | None = None) -> None:
        parsed = urlparse(master_url)
        if parsed.scheme != "spark" or not parsed.hostname:
            raise ClusterError(f"{master_url!r} is not a standalone master URL spark://HOST:PORT")
        self.master_url = master_url
        self.webui_url = webui_url or f"http://{parsed.hostname}:{DEFAULT_MASTER_WEBUI_PORT}"

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


def is_loopback_master(master_url: str) -> bool:
    """True when the master listens on this machine's loopback interface."""
    host = urlparse(master_url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")
