"""The SIGTERM/SIGINT watchdog ends the process and its children when teardown hangs."""

import signal
import subprocess
import sys

import psutil

SCRIPT = """
import subprocess, sys
from slaq.spark.cluster import _teardown_watchdog
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print(child.pid, flush=True)
_teardown_watchdog(15, grace_s=0.0)
"""


def test_watchdog_kills_children_and_exits_with_the_signal_code():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 128 + signal.SIGTERM
    child = int(proc.stdout.split()[0])
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert "killing child processes" in proc.stderr
