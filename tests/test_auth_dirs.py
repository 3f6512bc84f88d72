"""Driver secret directories: private while the SparkContext starts, swept when orphaned."""

import os
import stat
import subprocess
import sys
import tempfile

from slaq.spark import auth


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_secret_dir_is_private_named_by_pid_and_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(auth.SUBMIT_ARGS_ENV, raising=False)
    with auth.driver_secret("s3cret"):
        (directory,) = tmp_path.glob(f"{auth.SECRET_DIR_PREFIX}{os.getpid()}-*")
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert str(directory / "auth.conf") in os.environ[auth.SUBMIT_ARGS_ENV]
    assert not directory.exists()
    assert auth.SUBMIT_ARGS_ENV not in os.environ


def test_only_the_directories_of_dead_processes_are_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / f"{auth.SECRET_DIR_PREFIX}{_dead_pid()}-abc123"
    alive = tmp_path / f"{auth.SECRET_DIR_PREFIX}{os.getppid()}-def456"
    unrelated = tmp_path / f"{auth.SECRET_DIR_PREFIX}notapid"
    for path in (dead, alive, unrelated):
        path.mkdir()
    with auth.driver_secret("s3cret"):
        pass
    assert not dead.exists()
    assert alive.exists() and unrelated.exists()
