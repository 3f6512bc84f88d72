"""Spark shared-secret authentication for the local cluster and the driver (docs/design.md §6).

Spark's RPC (master, workers, driver, executors, block transfers) checks one shared secret
when ``spark.authenticate=true``. The secret never appears on a command line, in a log or in a
run directory:

- master and workers read it from the ``_SPARK_AUTH_SECRET`` environment variable (Spark's
  ``SecurityManager`` falls back to it; ``/proc/PID/environ`` is readable by the owner only), and
  a worker hands it to its executors the same way;
- the driver needs it as a property (``SecurityManager.initializeAuth`` requires
  ``spark.authenticate.secret`` for a standalone master), and PySpark passes every ``SparkConf``
  entry to ``spark-submit`` as ``--conf k=v``: it goes instead into a 0600 properties file in a
  0700 temporary directory named by ``PYSPARK_SUBMIT_ARGS``, removed once the JVM has read it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from slaq.spark.rundir import remove_dirs_of_dead_processes

AUTH_SECRET_ENV = "_SPARK_AUTH_SECRET"
SUBMIT_ARGS_ENV = "PYSPARK_SUBMIT_ARGS"
# Kill links in the web UIs would let any local user stop applications.
DAEMON_FLAGS = "-Dspark.authenticate=true -Dspark.ui.killEnabled=false"
SECRET_DIR_PREFIX = "slaq-auth-"
_SECRET_DIR = re.compile(re.escape(SECRET_DIR_PREFIX) + r"(?P<pid>\d+)-\w+")


class AuthError(ValueError):
    """A secret file is missing, empty, or readable by other users."""


def generate_secret() -> str:
    """A fresh random shared secret (256 bits, hex)."""
    return secrets.token_hex(32)


def daemon_env(env: Mapping[str, str], secret: str | None, opts_var: str) -> dict[str, str]:
    """``env`` for a master or worker: authentication on, the secret in the environment.

    ``opts_var`` is ``SPARK_MASTER_OPTS`` or ``SPARK_WORKER_OPTS``. Without a secret the
    environment is returned unchanged (authentication off).
    """
    out = dict(env)
    if secret is None:
        out.pop(AUTH_SECRET_ENV, None)
        return out
    out[AUTH_SECRET_ENV] = secret
    append_flags(out, opts_var, DAEMON_FLAGS)
    return out


def append_flags(env: dict[str, str], var: str, flags: str) -> None:
    """Add JVM ``flags`` after whatever the ``var`` options variable of ``env`` already holds."""
    env[var] = f"{env.get(var, '')} {flags}".strip()


def write_secret_file(path: Path, secret: str) -> Path:
    """Write ``secret`` to ``path`` with mode 0600, created that way (never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return path


def read_secret_file(path: Path) -> str:
    """The secret in ``path``; :class:`AuthError` if it is unreadable, empty or not private."""
    try:
        mode = path.stat().st_mode
        secret = path.read_text().strip()
    except OSError as exc:
        raise AuthError(f"cannot read the Spark secret file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuthError(f"Spark secret file {path} is readable by others: chmod 600 it")
    if not secret:
        raise AuthError(f"Spark secret file {path} is empty")
    return secret


def remove_stale_secret_dirs(root: Path | None = None) -> list[Path]:
    """Remove the driver secret directories (under ``root``, default the temp dir) of dead PIDs.

    A driver killed while its SparkContext starts cannot clean up; its directory (the cluster
    secret inside) carries its PID. Those of live processes are left alone.
    """
    root = Path(root if root is not None else tempfile.gettempdir())
    return remove_dirs_of_dead_processes(root, _SECRET_DIR)


@contextlib.contextmanager
def driver_secret(secret: str | None) -> Iterator[None]:
    """While starting a SparkContext: give the driver JVM the secret through a private file."""
    if secret is None:
        yield
        return
    remove_stale_secret_dirs()
    # Mode 0700; the PID in the name lets a later run remove it if this one is SIGKILLed.
    directory = Path(tempfile.mkdtemp(prefix=f"{SECRET_DIR_PREFIX}{os.getpid()}-"))
    properties = write_secret_file(directory / "auth.conf", f"spark.authenticate.secret {secret}")
    previous = os.environ.get(SUBMIT_ARGS_ENV)
    tail = previous if previous else "pyspark-shell"
    os.environ[SUBMIT_ARGS_ENV] = f"--properties-file {shlex.quote(str(properties))} {tail}"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SUBMIT_ARGS_ENV, None)
        else:
            os.environ[SUBMIT_ARGS_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)
