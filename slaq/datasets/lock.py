"""The data directory's lock file and inter-process mutexes.

``DATA_DIR/lock.json`` records the SHA-256 of downloads whose hash the registry does not pin.
A download is recorded only after it validated (parsed into arrays of the registry's shape),
so a short or wrong first copy never becomes the reference (docs/design.md §5). The lock lives
in the data directory, beside the downloads it describes, never in the package.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slaq.datasets.registry import DatasetError
from slaq.traces import write_text_atomic

LOCK_FILE = "lock.json"


@contextlib.contextmanager
def file_mutex(path: Path, purpose: str) -> Iterator[None]:
    """Hold an exclusive flock keyed by ``path`` and ``purpose`` until the block ends.

    The mutex file lives in the temp directory, not beside ``path``, so the data directory
    holds only data. It is opened read-only: flock works on any descriptor, and a mutex file
    created by another user (mode 0644 under umask 022) can still be opened.
    """
    key = hashlib.sha256(f"{purpose}:{Path(path).resolve()}".encode()).hexdigest()[:16]
    mutex = Path(tempfile.gettempdir()) / f"slaq-{purpose}-{key}.lck"
    fd = os.open(mutex, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


class Lock:
    """SHA-256 of validated downloads that the registry does not pin, keyed by URL."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> Lock:
        """The lock file of a data directory."""
        return cls(Path(data_dir) / LOCK_FILE)

    def read(self) -> dict[str, dict[str, Any]]:
        """All entries, keyed by URL."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise DatasetError(f"lock file {self.path} is not valid JSON: {exc}") from None
        return dict(data.get("files", {}))

    def get(self, url: str) -> str | None:
        """The recorded SHA-256 of the file at url, if any."""
        entry = self.read().get(url)
        return None if entry is None else str(entry["sha256"])

    def record(self, url: str, sha256: str, *, dataset: str, size: int) -> None:
        """Record the hash of a validated first download (atomically; an entry is kept)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Two concurrent fetches must not lose each other's entries.
        with file_mutex(self.path, "lock"):
            files = self.read()
            if url in files:
                return
            files[url] = {
                "dataset": dataset,
                "sha256": sha256,
                "size": size,
                "recorded_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            text = json.dumps({"version": 1, "files": dict(sorted(files.items()))}, indent=2)
            write_text_atomic(self.path, text + "\n")
