"""Raw files of a dataset (verified, possibly compressed) and the hashes that pin them."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from slaq.datasets.registry import DatasetError, DatasetInfo, Source

if TYPE_CHECKING:
    import pandas as pd

_OPENERS = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}
_SUFFIXES = {".gz": "gz", ".bz2": "bz2", ".xz": "xz"}


@dataclass(frozen=True)
class RawFile:
    """A verified raw file: a local path (system or download) or a table from a package."""

    source: Source
    path: Path | None = None
    frame: pd.DataFrame | None = None
    compression: str | None = None
    sha256: str | None = None  # content digest (decompressed bytes, or canonical table)
    published_hash: str | None = None  # hash of the file as published (downloads)
    content: bytes | None = None  # the verified decompressed bytes, when kept (small files)
    download: Path | None = None  # the download as published (compressed), in downloads/
    # True for a download no hash pinned: it is pinned in the lock only once it validated.
    unpinned: bool = False

    def read(self) -> bytes:
        """The (decompressed) content."""
        if self.content is not None:
            return self.content
        assert self.path is not None
        opener = _OPENERS.get(self.compression or "")
        with opener(self.path, "rb") if opener else open(self.path, "rb") as handle:  # type: ignore[operator]
            return handle.read()

    def provenance(self) -> dict[str, Any]:
        """What the cache's meta.json records about where this file came from."""
        out: dict[str, Any] = {"source": str(self.source), "sha256": self.sha256}
        if self.published_hash:
            out["published_hash"] = self.published_hash
        return out


def compression_of(source: Source) -> str | None:
    """The source's compression: explicit in the registry, else from the file suffix."""
    if source.compression:
        return None if source.compression == "none" else source.compression
    return _SUFFIXES.get(Path(source.location).suffix)


def sha256_stream(handle: IO[bytes]) -> str:
    """SHA-256 of everything readable from a binary file object."""
    digest = hashlib.sha256()
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path, compression: str | None = None) -> str:
    """SHA-256 of a file's content, decompressed first if compression is given."""
    opener = _OPENERS.get(compression or "")
    with opener(path, "rb") if opener else open(path, "rb") as handle:  # type: ignore[operator]
        return sha256_stream(handle)


def file_hash(path: Path, pinned: str) -> str:
    """The hash of a file in the form of ``pinned`` (``sha256:HEX``, ``md5:HEX`` or bare HEX)."""
    algorithm = pinned.split(":", 1)[0] if ":" in pinned else "sha256"
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, algorithm).hexdigest()
    return f"{algorithm}:{digest}" if ":" in pinned else digest


def mismatch(info: DatasetInfo, what: str, expected: str, actual: str) -> DatasetError:
    """The error for a file whose hash is not the pinned one."""
    return DatasetError(
        f"{info.name}: {what} does not match its pinned hash: expected {expected}, got {actual}"
        " (rejected; a corrupt or different file is never used)"
    )
