"""The SIGTERM/SIGINT watchdog ends the process and its children when teardown hangs."""

import signal
import subprocess
import sys

import psutil

SCRIPT = """
import subprocess, sys
from slaq.spark.signals import teardown_watchdog
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print(child.pid, flush=True)
teardown_watchdog(15, grace_s=0.0)
"""


def test_watchdog_kills_children_and_exits_with_the_signal_code():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 128 + signal.SIGTERM
    child = int(proc.stdout.split()[0])
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert "killing child processes" in proc.stderr


ONE_PATH = """
import logging, os, signal
logging.basicConfig()
from slaq.spark.signals import Terminated, keep_signal_handlers, signals_as_exceptions
with signals_as_exceptions():
    with keep_signal_handlers():  # as PySpark does when a SparkContext starts
        signal.signal(signal.SIGINT, lambda *a: print("library handler", flush=True))
    try:
        with signals_as_exceptions():  # nested: the same handler, one "first signal"
            os.kill(os.getpid(), signal.SIGINT)
            print("not interrupted", flush=True)
    except Terminated as exc:
        print("terminated", exc.signum, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal during teardown
        print("teardown finished", flush=True)
print("restored", signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
"""


def test_first_signal_raises_once_and_the_run_handler_survives_a_library():
    """SIGINT raises Terminated through a replaced handler; a second signal cannot interrupt."""
    proc = subprocess.run(
        [sys.executable, "-c", ONE_PATH], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == ["terminated 2", "teardown finished", "restored True"]
    assert "SIGINT received: stopping the run" in proc.stderr
    assert "SIGTERM received again; still shutting down" in proc.stderr
    assert "Traceback" not in proc.stderr
