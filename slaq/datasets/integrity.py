"""Recorded sizes and digests of cached files, and the checks that use them.

Every cached artefact records ``{"size", "sha256"}`` per file when it is written: converted
arrays in ``meta.json``, data blocks in ``blockset.json``. A *full* check re-hashes the file;
a *cheap* check compares the size (and, for ``.npy`` files, the header's shape and dtype),
which catches truncation and replacement but not flipped bytes (docs/design.md §5).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def file_record(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a file, as recorded beside cached data."""
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"size": Path(path).stat().st_size, "sha256": digest}


def check_file(path: Path, record: Mapping[str, Any], *, full: bool) -> str | None:
    """None if a file matches its record, else one line naming the file and the difference."""
    try:
        size = Path(path).stat().st_size
    except FileNotFoundError:
        return f"{path}: missing"
    if size != record.get("size"):
        return f"{path}: {size} bytes, recorded {record.get('size')} (truncated or replaced)"
    if full:
        actual = file_record(path)["sha256"]
        if actual != record.get("sha256"):
            return f"{path}: SHA-256 {actual}, recorded {record.get('sha256')} (corrupt)"
    return None


def check_npy_header(path: Path, shape: tuple[int, ...], dtype: str | None = None) -> str | None:
    """None if an ``.npy`` file's header has this shape (and dtype), else one line naming it."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            found, _, found_dtype = read(handle)
    except (OSError, ValueError) as exc:
        return f"{path}: unreadable .npy header ({exc})"
    if tuple(found) != tuple(shape) or (dtype is not None and found_dtype != np.dtype(dtype)):
        return f"{path}: header says {tuple(found)} {found_dtype}, expected {tuple(shape)} {dtype}"
    return None


def check_records(
    directory: Path, records: Mapping[str, Mapping[str, Any]], *, full: bool
) -> list[str]:
    """Problems of every recorded file of a directory (empty if all match)."""
    problems = [check_file(Path(directory) / name, rec, full=full) for name, rec in records.items()]
    return [p for p in problems if p is not None]
