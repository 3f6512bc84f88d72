"""A live run's directories: temporary siblings of the output, installed atomically.

Outputs go to ``.<out>.partial-<pid>-<tag>`` and data blocks to ``.<out>.scratch-<pid>-<tag>``;
the finished run is renamed into place. The PID in the name lets the next run into the same
place remove what a SIGKILLed run left (docs/design.md §6).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


def scratch_dirs(out_dir: Path) -> tuple[Path, Path]:
    """(partial output, scratch) directories for a run into ``out_dir``, named with our PID."""
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    partial = out_dir.parent / f".{out_dir.name}.partial-{tag}"
    # Absolute: executors run in their own working directories.
    scratch = out_dir.resolve().parent / f".{out_dir.name}.scratch-{tag}"
    return partial, scratch


_SCRATCH = re.compile(r"\.(?P<name>.+)\.(?:partial|scratch|old)-(?P<pid>\d+)-[0-9a-f]{8}")


def remove_dirs_of_dead_processes(
    parent: Path, pattern: re.Pattern[str], owned: Callable[[re.Match[str]], bool] | None = None
) -> list[Path]:
    """Remove the directories in ``parent`` named by ``pattern`` whose ``pid`` group is gone.

    A SIGKILLed process cannot clean up after itself; directories that carry its PID in their
    name can be removed by the next one. ``owned`` narrows the match further (a run's own
    siblings); those of a live process are left alone.
    """
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for path in parent.iterdir():
        match = pattern.fullmatch(path.name)
        if match is None or (owned is not None and not owned(match)) or not path.is_dir():
            continue
        if psutil.pid_exists(int(match["pid"])):
            continue
        log.warning("removing %s, left by process %s that is gone", path, match["pid"])
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def remove_stale_scratch(out_dir: Path) -> list[Path]:
    """Remove the temporary siblings of ``out_dir`` left by runs whose process is gone.

    Those of a live process (a concurrent run into the same place) are left alone.
    """
    out_dir = Path(out_dir)
    return remove_dirs_of_dead_processes(
        out_dir.resolve().parent, _SCRATCH, lambda match: match["name"] == out_dir.name
    )


def install_dir(tmp: Path, out: Path) -> None:
    """Move a finished run directory into place, replacing an older run of the same name."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
