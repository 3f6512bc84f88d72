"""Shared fixtures: one local Spark cluster for the whole session (tests marked ``spark``)."""

from __future__ import annotations

import functools

import psutil
import pytest


@functools.cache
def _java_problem() -> str | None:
    from slaq.spark.cluster import JavaMissingError, check_java

    try:
        check_java()
    except JavaMissingError as exc:
        return str(exc)
    return None


@pytest.fixture(autouse=True)
def _spark_needs_java(request: pytest.FixtureRequest) -> None:
    """A ``spark`` test without a usable Java runtime is an error, not a skip.

    Skipping would let CI pass with every Spark test unrun; deselect them explicitly with
    ``-m "not spark"`` where no Java is wanted.
    """
    if request.node.get_closest_marker("spark") is not None and _java_problem():
        pytest.fail(f"spark test needs Java: {_java_problem()}", pytrace=False)


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A 2-worker x 2-core cluster on 127.0.0.1, shared by the session; no JVM outlives it."""
    from slaq.spark.cluster import LocalSparkCluster

    log_dir = tmp_path_factory.mktemp("spark-cluster")
    with LocalSparkCluster(
        workers=2, cores_per_worker=2, memory_per_worker="2g", log_dir=log_dir
    ) as cluster:
        pids = list(cluster.pids)
        yield cluster
    assert not [p for p in pids if running(p)], "cluster JVMs still running after teardown"


def running(pid: int) -> bool:
    """True if ``pid`` is a live (non-zombie) process."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _spark_context(cluster):
    """A SparkContext on the session's cluster, stopped (no driver JVM left) at the end."""
    from slaq.spark.session import start_spark_context, stop_spark_context

    sc = start_spark_context(
        cluster.master_url,
        total_cores=cluster.total_cores,
        task_log=True,
        auth_secret=cluster.secret,
    )
    yield sc
    stop_spark_context(sc)
    assert not driver_jvms(), "driver JVM left after stop_spark_context"


@pytest.fixture(scope="class")
def shared_sc(spark_cluster):
    """One SparkContext for the tests of a class (a context costs ~20-30 s to start here)."""
    yield from _spark_context(spark_cluster)


@pytest.fixture(scope="module")
def module_sc(spark_cluster):
    """One SparkContext for the tests of a module."""
    yield from _spark_context(spark_cluster)


def driver_jvms() -> list[int]:
    """Driver JVMs (``SparkSubmit``) started by this test process and still running."""
    out = []
    for proc in psutil.Process().children():
        try:
            if "SparkSubmit" in " ".join(proc.cmdline()) and proc.status() != "zombie":
                out.append(proc.pid)
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.fixture
def server():
    """A local HTTP server on 127.0.0.1 (tests.http_server), shut down after the test."""
    from tests.http_server import LocalHTTPServer

    srv = LocalHTTPServer()
    srv.thread.start()  # the socket already listens, so no wait is needed before requests
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join()
