"""Input checks shared by the ``slaq`` sub-commands: bad input is a one-line error, exit 2,
with nothing written (docs/design.md §6)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from slaq.policy import PolicyError
from slaq.workload import Workload, WorkloadError

# Bad input: a one-line error and exit 2 (docs/design.md §6). DatasetError is a ValueError.
USER_ERRORS = (
    PolicyError,
    WorkloadError,
    ValueError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def check_out_dir(out: Path) -> None:
    """Refuse an ``--out`` run directory that is a file, or a directory that is not a run."""
    from slaq.traces import RUN_FILE

    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FileExistsError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / RUN_FILE).is_file():
        raise FileExistsError(
            f"--out {out} is a directory that is not a run directory (no {RUN_FILE}); "
            "give a new path or a previous run's"
        )


def require_ok_runs(run_dirs: Sequence[Path]) -> None:
    """Refuse run directories whose run.json does not say ``exit_status: ok``."""
    from slaq.traces import read_run

    for run_dir in run_dirs:
        status = read_run(Path(run_dir)).get("exit_status")
        if status != "ok":
            raise ValueError(
                f"{run_dir} is a failed run (exit_status {status!r}), kept for inspection only"
            )


def load_workload_file(path: str | Path) -> Workload:
    """:func:`slaq.workload.load_workload` with errors naming the file and the YAML line."""
    import yaml

    from slaq.workload import load_workload

    try:
        return load_workload(path)
    except WorkloadError as exc:
        cause = exc.__context__
        mark = getattr(cause, "problem_mark", None)
        if isinstance(cause, yaml.YAMLError) and mark is not None:
            problem = getattr(cause, "problem", None) or "malformed"
            where = f"line {mark.line + 1}, column {mark.column + 1}"
            raise WorkloadError(f"{path}: not valid YAML at {where}: {problem}") from None
        data = yaml.safe_load(Path(path).read_text()) if Path(path).is_file() else {}
        if data is None or (isinstance(data, dict) and not data.get("jobs")):
            raise WorkloadError(
                f"{path}: the workload has no jobs (give a 'jobs:' list with at least one job)"
            ) from None
        raise


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs an integer of at least 1, got {value}")
    return value


def int_list(text: str) -> list[int]:
    """argparse type: a comma-separated list of integers."""
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None


def check_overhead_args(
    jobs: Sequence[int], cores: Sequence[int], repeat: int, min_cores: int
) -> None:
    """Refuse an overhead benchmark with no jobs, no cores, no repeats or a negative floor."""
    for flag, values in (("--jobs", jobs), ("--cores", cores)):
        if not values or min(values) < 1:
            raise ValueError(f"{flag} needs integers of at least 1, got {list(values)}")
    if repeat < 1 or min_cores < 0:
        raise ValueError("--repeat must be at least 1 and --min-cores at least 0")
