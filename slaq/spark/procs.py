"""This machine's side of Spark: Java, the Spark home, free ports, child processes by PID,
and the master's JSON status (docs/design.md §7)."""

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
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil

log = logging.getLogger(__name__)

JAVA_PACKAGE = "openjdk-17-jre-headless"
LOOPBACK = "127.0.0.1"
# Flags for every JVM we start (master, workers, driver, executors). They only coordinate: the
# numeric work runs in the Python workers. The C2 compiler's and the parallel collector's
# threads compete with those workers for the CPUs, so the client compiler alone and the serial
# collector start a cluster and context in ~22 s instead of ~38 s and cut an 8-task Spark job
# from ~0.65 s to ~0.48 s on a 2-CPU machine (/tmp probe, 2 runs each, alternated).
JVM_FLAGS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
# The driver and executors run the same scheduling and task-launch code for every Spark job, but
# a job runs each such method only once or a few times, so at the default thresholds (compile
# after ~200 calls) it stays interpreted for hundreds of jobs: their CPU per 8-task job fell
# from ~540 ms to ~150 ms over the first 2.5 minutes of a run. Compiling at 1/20 of the
# thresholds gets there within the first minute (~135 ms from the second 20 s cell on) for
# ~2-3 s more context start-up (benchmarks/scaling.py, docs/design.md §7). The master and
# workers do little per job, so their start-up keeps the default thresholds.
APP_JVM_FLAGS = f"{JVM_FLAGS} -XX:CompileThresholdScaling=0.05"
_PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """The Spark cluster could not be started, reached or stopped."""


class JavaMissingError(ClusterError):
    """No usable Java runtime (Spark 4 needs Java 17 or 21)."""


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


def die_with_parent() -> None:
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


def tail(path: Path, lines: int = 25) -> str:
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


def children_since(before: Iterable[int]) -> list[psutil.Process]:
    """Direct children of this process that were not among the PIDs ``before``."""
    known = set(before)
    return [p for p in psutil.Process().children() if p.pid not in known]


def is_loopback_master(master_url: str) -> bool:
    """True when the master listens on this machine's loopback interface."""
    host = urlparse(master_url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def route_address(master_url: str) -> str:
    """The local IPv4 address the kernel routes to the master through (no packet is sent).

    Attach mode binds the driver to this one address instead of every interface.
    """
    parsed = urlparse(master_url)
    if not parsed.hostname:
        raise ClusterError(f"{master_url!r} names no host")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((parsed.hostname, parsed.port or 7077))
            return str(sock.getsockname()[0])
    except OSError as exc:
        raise ClusterError(f"no route to the Spark master {master_url}: {exc}") from exc
