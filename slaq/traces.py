"""Run output formats (docs/design.md §3) with atomic writes.

A run directory holds ``trace.parquet`` (one row per job iteration), ``allocations.parquet``
(one row per job per epoch) and ``run.json`` (metadata). Each file is written to a temporary
name in the same directory and renamed into place, so a crash never leaves a file that looks
whole. ``run.json`` is written last: its presence marks a complete run.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

TRACE_FILE = "trace.parquet"
ALLOCATIONS_FILE = "allocations.parquet"
RUN_FILE = "run.json"

TRACE_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("policy", pa.string()),
        ("job_id", pa.string()),
        ("algorithm", pa.string()),
        ("dataset", pa.string()),
        ("arrival_s", pa.float64()),
        ("iteration", pa.int64()),
        ("t_start_s", pa.float64()),
        ("t_end_s", pa.float64()),
        ("cores", pa.int64()),
        ("cpu_s", pa.float64()),
        ("loss", pa.float64()),
        ("normalized_loss", pa.float64()),
    ]
)

ALLOCATION_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("policy", pa.string()),
        ("epoch", pa.int64()),
        ("t_s", pa.float64()),
        ("job_id", pa.string()),
        ("cores", pa.int64()),
        ("predicted_gain", pa.float64()),
        ("decision_ms", pa.float64()),
    ]
)


@dataclass
class TraceRow:
    """One completed iteration of one job."""

    run_id: str
    policy: str
    job_id: str
    algorithm: str
    dataset: str
    arrival_s: float
    iteration: int
    t_start_s: float
    t_end_s: float
    cores: int
    cpu_s: float
    loss: float
    normalized_loss: float


@dataclass
class AllocationRow:
    """Cores held by one job during one scheduling epoch."""

    run_id: str
    policy: str
    epoch: int
    t_s: float
    job_id: str
    cores: int
    predicted_gain: float
    decision_ms: float


def current_umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    # Elsewhere the only way is to set it and set it back (briefly visible to other threads).
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode open() or mkdir() would give a new file (0o666) or directory under the umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def honour_umask(path: Path | int, directory: bool = False) -> None:
    """Give a path or file descriptor the default mode under the umask.

    mkstemp and mkdtemp create 0600 files and 0700 directories whatever the umask: outputs
    renamed into place from them must be chmod-ed, or workers running as another user on a
    shared file system cannot read them (docs/design.md §6).
    """
    mode = default_mode(directory)
    if isinstance(path, int):
        os.fchmod(path, mode)
    else:
        os.chmod(path, mode)


def _atomic_target(path: Path) -> tuple[int, Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        honour_umask(fd)
    except OSError:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, Path(tmp)


def write_table_atomic(rows: Iterable[Any], schema: pa.Schema, path: Path) -> None:
    """Write flat dataclass rows (or dicts) as Parquet with ``schema``, atomically."""
    rows = list(rows)
    # Column by column: dataclasses.asdict's recursive deep copy took 13 of 67 s of a
    # 100-job simulation (147k rows); the rows are flat, so reading the fields is the same.
    columns = {
        name: [r.get(name) if isinstance(r, Mapping) else getattr(r, name, None) for r in rows]
        for name in schema.names
    }
    table = pa.Table.from_pydict(columns, schema=schema)
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file through a temporary file and os.replace (never half-written)."""
    fd, tmp = _atomic_target(Path(path))
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(data: Mapping[str, Any], path: Path) -> None:
    """Write JSON atomically (temp file in the same directory, then rename)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_trace(run_dir: Path) -> pd.DataFrame:
    """Load a run's iteration trace."""
    return pd.read_parquet(Path(run_dir) / TRACE_FILE)


def read_allocations(run_dir: Path) -> pd.DataFrame:
    """Load a run's allocation log."""
    return pd.read_parquet(Path(run_dir) / ALLOCATIONS_FILE)


def read_run(run_dir: Path) -> dict[str, Any]:
    """Load a run's metadata; a missing ``run.json`` means the run did not complete."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} has no {RUN_FILE}: the run is missing or incomplete")
    return json.loads(path.read_text())


def _java_version() -> str | None:
    java = shutil.which("java")
    if not java:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    first = (out.stderr or out.stdout).splitlines()
    return first[0] if first else None


def environment_versions(include_java: bool = False) -> dict[str, Any]:
    """Versions of the software a run depends on, for its metadata."""
    import numpy

    versions: dict[str, Any] = {
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }
    try:
        import pyspark

        versions["pyspark"] = pyspark.__version__
    except ImportError:
        versions["pyspark"] = None
    if include_java:
        versions["java"] = _java_version()
    return versions


def write_run(
    run_dir: Path,
    trace: Iterable[TraceRow],
    allocations: Iterable[AllocationRow],
    metadata: Mapping[str, Any],
) -> None:
    """Write a complete run directory; ``run.json`` goes last so it marks completion."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_FILE).unlink(missing_ok=True)
    write_table_atomic(trace, TRACE_SCHEMA, run_dir / TRACE_FILE)
    write_table_atomic(allocations, ALLOCATION_SCHEMA, run_dir / ALLOCATIONS_FILE)
    meta = dict(metadata)
    meta.setdefault("host_cores", os.cpu_count())
    write_json_atomic(meta, run_dir / RUN_FILE)
