"""Faults injected into ``slaq run``: every one ends with no process of the run left and no
partial output (docs/design.md §6).

The processes of a run are found by an environment variable set only for it: the master,
workers, driver JVM, executors and Python workers all inherit it, whoever their parent is by
the time we look (orphans are re-parented). Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import yaml

from slaq.spark.rundir import remove_stale_scratch

TAG_ENV = "SLAQ_FAULT_TEST_TAG"
FOREVER = [
    {"id": "a", "algorithm": "logreg", "dataset": "digits", "arrival_s": 0.0},
    {"id": "b", "algorithm": "svm", "dataset": "breast-cancer", "arrival_s": 0.0},
]


def tagged(tag: str, exclude: int | None = None) -> list[str]:
    """Live processes of the run tagged ``tag`` (pid and command line), except ``exclude``."""
    out = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == exclude or proc.environ().get(TAG_ENV) != tag:
                continue
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{proc.pid} {' '.join(proc.cmdline())}")
        except psutil.Error:
            continue
    return out


def has_process(tag: str, *needles: str) -> bool:
    """True if a process of the run has one of ``needles`` in its command line."""
    return any(any(n in line for n in needles) for line in tagged(tag))


def short(lines: list[str]) -> list[str]:
    """Process lines cut to what fits an assertion message (the class, not the class path)."""
    return [" ".join(w for w in line.split() if len(w) < 200)[:200] for line in lines]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        time.sleep(0.2)  # pacing a poll against a deadline, not standing in for a condition


class SlaqRun:
    """``slaq run`` of a never-ending workload in a subprocess, its stderr collected by line."""

    def __init__(self, tmp_path: Path) -> None:
        workload = tmp_path / "w.yaml"
        jobs = [{**j, "max_iter": 100000, "tol": 0.0} for j in FOREVER]
        workload.write_text(yaml.safe_dump({"name": "forever", "jobs": jobs}))
        self.out = tmp_path / "run"
        self.tag = uuid.uuid4().hex
        cmd = [sys.executable, "-m", "slaq.cli", "run", "--workload", str(workload)]
        cmd += ["--policy", "fair", "--workers", "1", "--cores-per-worker", "2", "--epoch", "1"]
        cmd += ["--out", str(self.out), "--quiet"]
        env = {**os.environ, TAG_ENV: self.tag}
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    @property
    def text(self) -> str:
        """Everything the run logged so far."""
        with self._cond:
            return "".join(self.lines)

    def wait_for_line(self, needle: str, timeout_s: float = 240) -> None:
        """Block until a logged line contains ``needle``."""
        with self._cond:
            found = self._cond.wait_for(
                lambda: any(needle in x for x in self.lines) or self.proc.poll() is not None,
                timeout_s,
            )
            assert found and any(needle in x for x in self.lines), (needle, self.lines[-30:])

    def wait_for_tasks(self) -> None:
        """Block until the run's Python workers exist, i.e. Spark tasks are running."""
        wait_until(
            lambda: has_process(self.tag, "slaq.spark.daemon", "pyspark.daemon"),
            240,
            f"Python workers of the run; log: {self.text[-2000:]}",
        )

    def finish(self, timeout_s: float = 120) -> int:
        """Exit status once the process ended; kill it if it does not."""
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._reader.join(timeout=10)

    def kill_leftovers(self) -> None:
        """Last resort so a failing test does not leave JVMs behind for the next one."""
        for line in tagged(self.tag):
            with contextlib.suppress(psutil.Error):
                psutil.Process(int(line.split()[0])).kill()


def leftovers(directory: Path) -> list[str]:
    """Temporary run directories next to an output directory."""
    return sorted(
        p.name for p in directory.iterdir() if ".partial-" in p.name or ".scratch-" in p.name
    )


def assert_clean_interrupt(run: SlaqRun, code: int, signame: str, tmp_path: Path) -> None:
    """The one teardown path: exit 128+signal, a reason, no traceback, nothing left."""
    assert code == 128 + signal.Signals[signame].value, run.text[-3000:]
    assert f"{signame} received: stopping the run" in run.text
    assert f"terminated by {signame}" in run.text
    assert "Traceback" not in run.text, run.text[-3000:]
    left = tagged(run.tag)
    assert left == [], f"processes of the run alive after it exited: {short(left)}"
    assert not run.out.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.spark
def test_double_sigint_mid_run_ends_in_one_clean_teardown(tmp_path):
    run = SlaqRun(tmp_path)
    try:
        run.wait_for_tasks()
        assert has_process(run.tag, "deploy.master.Master") and has_process(run.tag, "SparkSubmit")
        run.proc.send_signal(signal.SIGINT)
        run.wait_for_line("SIGINT received: stopping the run")
        run.proc.send_signal(signal.SIGINT)  # a second Ctrl-C while tearing down
        code = run.finish()
    finally:
        run.kill_leftovers()
    assert_clean_interrupt(run, code, "SIGINT", tmp_path)
    assert "SIGINT received again; still shutting down" in run.text


@pytest.mark.spark
def test_sigterm_while_the_spark_context_starts(tmp_path):
    run = SlaqRun(tmp_path)
    try:
        wait_until(lambda: has_process(run.tag, "SparkSubmit"), 240, "the driver JVM")
        run.proc.send_signal(signal.SIGTERM)
        run.wait_for_line("stopped, no output written", timeout_s=120)
        # Said only once nothing of the run but the process itself is left.
        alive_when_said = tagged(run.tag, exclude=run.proc.pid)
        code = run.finish()
    finally:
        run.kill_leftovers()
    assert alive_when_said == [], f"'stopped' logged with the run alive: {short(alive_when_said)}"
    assert_clean_interrupt(run, code, "SIGTERM", tmp_path)


@pytest.mark.spark
def test_sigkilled_driver_leaves_no_process_and_the_next_run_cleans_up(tmp_path):
    run = SlaqRun(tmp_path)
    try:
        run.wait_for_tasks()
        pid = run.proc.pid
        run.proc.send_signal(signal.SIGKILL)
        assert run.finish() == -signal.SIGKILL
        wait_until(lambda: not tagged(run.tag), 60, "the run's processes to go after SIGKILL")
    finally:
        run.kill_leftovers()
    assert not run.out.exists()
    # The killed run could not remove its scratch directory; the next run into the same place
    # removes it first (LiveRun.run calls remove_stale_scratch).
    stale = leftovers(tmp_path)
    assert stale and all(f"-{pid}-" in name for name in stale), stale
    removed = remove_stale_scratch(run.out)
    assert sorted(p.name for p in removed) == stale and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- no Spark needed


def test_stale_scratch_of_a_live_process_is_kept(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "run"
    mine = tmp_path / f".run.scratch-{os.getpid()}-0123abcd"
    dead = tmp_path / f".run.partial-{gone.pid}-0123abcd"
    other = tmp_path / f".other.scratch-{gone.pid}-0123abcd"
    for path in (mine, dead, other):
        path.mkdir()
    assert remove_stale_scratch(out) == [dead.resolve()]
    assert mine.exists() and other.exists() and not dead.exists()


def test_spark_logs_are_one_per_run(tmp_path):
    from slaq.spark.cli import cluster_for

    out = tmp_path / "run"
    logs = tmp_path / "run.spark-logs"
    logs.mkdir()
    (logs / "master.log").write_text("an earlier run\n")
    args = argparse.Namespace(cluster="local", workers=1, cores_per_worker=1, worker_memory="1g")
    cluster = cluster_for(args, out, None)
    assert cluster.log_dir == logs and not logs.exists()
    assert cluster.secret  # authentication on by default for the local cluster
