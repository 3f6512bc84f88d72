"""Local Spark cluster lifecycle: up/down by PID, no orphans, loopback only, attach mode."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from slaq.spark.cluster import (
    JAVA_PACKAGE,
    AttachedCluster,
    ClusterError,
    JavaMissingError,
    LocalSparkCluster,
    check_java,
)
from tests.conftest import running


def wait_gone(pids: list[int], timeout_s: float = 60.0) -> list[int]:
    """PIDs still running after waiting up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [p for p in pids if running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def listeners(pids: list[int]) -> list[tuple[int, str, int]]:
    """(pid, ip, port) of every listening TCP socket of ``pids`` and their descendants."""
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs.extend([proc, *proc.children(recursive=True)])
        except psutil.NoSuchProcess:
            continue
    out = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        out.extend(
            (proc.pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN
        )
    return out


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8 or ::1, also in IPv4-mapped form."""
    ip = ip.removeprefix("::ffff:")
    return ip.startswith("127.") or ip == "::1"


def test_missing_java_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(JavaMissingError, match=JAVA_PACKAGE):
        check_java()
    with pytest.raises(JavaMissingError, match=JAVA_PACKAGE):
        LocalSparkCluster(workers=1, cores_per_worker=1, log_dir=tmp_path).start()


def test_attach_rejects_non_standalone_url():
    with pytest.raises(ClusterError, match="spark://"):
        AttachedCluster("yarn")


@pytest.mark.spark
def test_attached_cluster_reads_capacity(spark_cluster):
    attached = AttachedCluster(spark_cluster.master_url, spark_cluster.webui_url)
    assert attached.capacity() == spark_cluster.total_cores == 4
    status = spark_cluster.status()
    assert status["aliveworkers"] == 2
    assert spark_cluster.master_url.startswith("spark://127.0.0.1:")
    for _pid, ip, _port in listeners(spark_cluster.pids):
        assert is_loopback(ip), f"cluster listens on {ip}"


@pytest.mark.spark
def test_context_manager_tears_down_on_exception(tmp_path):
    pids: list[int] = []
    with (
        pytest.raises(RuntimeError, match="boom"),
        LocalSparkCluster(workers=1, cores_per_worker=1, log_dir=tmp_path) as cluster,
    ):
        pids.extend(cluster.pids)
        assert len(pids) == 2 and all(running(p) for p in pids)
        assert all(is_loopback(ip) for _, ip, _ in listeners(pids))
        raise RuntimeError("boom")
    assert not wait_gone(pids, 5), "JVMs left after an exception"
    assert (tmp_path / "master.log").exists() and (tmp_path / "worker-0.log").exists()


@pytest.mark.spark
def test_sigkilled_parent_takes_the_cluster_down(tmp_path):
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from slaq.spark.cluster import LocalSparkCluster
        with LocalSparkCluster(workers=1, cores_per_worker=1, log_dir=Path({str(tmp_path)!r})) as c:
            print(json.dumps(c.pids), flush=True)
            time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(proc.stdout.readline())
        assert all(running(p) for p in pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert not wait_gone(pids, 60), "JVMs outlived their SIGKILLed parent"
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.spark
def test_cli_cluster_up_status_down(tmp_path):
    state = tmp_path / "state.json"
    cli = [sys.executable, "-m", "slaq.cli"]
    up = subprocess.run(
        [*cli, "cluster", "up", "--state", str(state), "--workers", "1", "--cores-per-worker", "1"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert up.returncode == 0, up.stderr
    info = json.loads(state.read_text())
    pids = info["pids"]
    secret = state.with_name("state.json.secret")
    assert secret.stat().st_mode & 0o777 == 0o600, "the cluster's secret is readable by others"
    assert secret.read_text().strip() not in state.read_text() + up.stderr
    try:
        assert all(running(p) for p in pids), "cluster up did not leave the daemons running"
        status = subprocess.run(
            [*cli, "cluster", "status", "--state", str(state)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0 and "1 workers ALIVE, 1 cores" in status.stderr
        down = subprocess.run(
            [*cli, "cluster", "down", "--state", str(state)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert down.returncode == 0, down.stderr
        assert not wait_gone(pids, 10)
        assert not state.exists() and not secret.exists()
    finally:
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_cli_status_without_state_is_a_clear_error(tmp_path):
    from slaq.cli import main

    assert main(["cluster", "status", "--state", str(Path(tmp_path) / "none.json")]) == 2


def _intruder_worker(cluster: LocalSparkCluster, log_path: Path, secret: str | None):
    """A worker JVM that tries to join ``cluster`` without its secret (or with another)."""
    from slaq.spark.auth import daemon_env
    from slaq.spark.procs import free_port, spark_home

    env = {k: v for k, v in os.environ.items() if k != "_SPARK_AUTH_SECRET"}
    env.update(SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP="127.0.0.1", SPARK_NO_DAEMONIZE="1")
    env = daemon_env(env, secret, "SPARK_WORKER_OPTS")
    args = ["--host", "127.0.0.1", "--port", str(free_port()), "--webui-port", str(free_port())]
    args += ["--cores", "1", "--memory", "512m", "--work-dir", str(log_path.parent / "iw")]
    script = spark_home() / "bin" / "spark-class"
    worker = "org.apache.spark.deploy.worker.Worker"
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            ["bash", str(script), worker, *args, cluster.master_url],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def wait_for_text(path: Path, needle: str, timeout_s: float) -> bool:
    """True once ``path`` contains ``needle``; False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return True
        time.sleep(0.2)  # pacing a poll against a deadline
    return False


@pytest.mark.spark
def test_cluster_refuses_clients_without_its_secret(tmp_path):
    """Authentication is on: a worker without the secret, or with another, cannot join;
    the driver with it can, and the secret is on no command line and in no log."""
    from slaq.spark.session import start_spark_context, stop_spark_context

    logs = tmp_path / "logs"
    with LocalSparkCluster(workers=1, cores_per_worker=1, log_dir=logs) as cluster:
        secret = cluster.secret
        assert secret and len(secret) == 64
        intruders = [
            _intruder_worker(cluster, tmp_path / "none.log", None),
            _intruder_worker(cluster, tmp_path / "wrong.log", "0" * 64),
        ]
        try:
            for name in ("none.log", "wrong.log"):
                assert wait_for_text(tmp_path / name, "Failed to connect to master", 120), (
                    tmp_path / name
                ).read_text()[-3000:]
            assert cluster.status()["aliveworkers"] == 1, "an unauthenticated worker joined"
        finally:
            for proc in intruders:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        sc = start_spark_context(cluster.master_url, total_cores=1, auth_secret=secret)
        try:
            assert sc.parallelize(range(10), 1).sum() == 45
            assert sc.getConf().get("spark.authenticate") == "true"
            for proc in psutil.process_iter():
                try:
                    assert secret not in " ".join(proc.cmdline()), proc.pid
                except psutil.Error:
                    continue
        finally:
            stop_spark_context(sc)
    for path in logs.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path


def test_spark_tests_fail_without_java(tmp_path):
    """CI must not pass with every Spark test skipped: without Java they are errors."""
    test = tmp_path / "test_needs_spark.py"
    test.write_text("import pytest\n\n@pytest.mark.spark\ndef test_x():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)  # python, and no java
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-c"]
    cmd += [str(root / "pyproject.toml"), "-p", "no:cacheprovider", str(test)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, timeout=120)
    assert proc.returncode != 0, proc.stdout
    assert "1 error" in proc.stdout and JAVA_PACKAGE in proc.stdout, proc.stdout


def test_driver_binds_one_explicit_address(monkeypatch):
    """Loopback master: 127.0.0.1; remote master: the flag, else the route to it; never 0.0.0.0."""
    from slaq.spark.session import _bind_and_auth

    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    local = _bind_and_auth("spark://127.0.0.1:7077", None, auth=True)
    assert local["spark.driver.bindAddress"] == local["spark.driver.host"] == "127.0.0.1"
    assert local["spark.authenticate"] == "true" and not any("secret" in k for k in local)
    flagged = _bind_and_auth("spark://10.1.2.3:7077", "192.0.2.7", auth=False)
    assert flagged["spark.driver.bindAddress"] == "192.0.2.7" == os.environ["SPARK_LOCAL_IP"]
    assert "spark.authenticate" not in flagged
    routed = _bind_and_auth("spark://10.1.2.3:7077", None, auth=False)["spark.driver.bindAddress"]
    assert routed not in ("", "0.0.0.0") and routed == os.environ["SPARK_LOCAL_IP"]
