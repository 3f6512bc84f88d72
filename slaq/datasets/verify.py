"""Full check of a data directory: converted caches, downloads and data blocks.

Every cached file is re-hashed and compared with the digest recorded for it (meta.json,
the registry or the lock file, blockset.json). This is what ``slaq datasets verify`` runs;
normal use checks converted caches and block sets the same way when it opens them
(docs/design.md §5).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from slaq.datasets.cache import META_FILE, cache_problems, read_meta
from slaq.datasets.download import download_names, pinned_hash
from slaq.datasets.lock import Lock
from slaq.datasets.raw import file_hash
from slaq.datasets.registry import DatasetError, DatasetInfo, Registry

OK, CORRUPT, STALE, UNVERIFIED = "ok", "corrupt", "stale", "unverified"


@dataclass(frozen=True)
class Finding:
    """The state of one cached artefact: ok, corrupt, stale (rebuilt on use) or unverified."""

    kind: str  # "converted", "download" or "blocks"
    path: Path
    status: str
    detail: str = ""


def _converted(directory: Path, info: DatasetInfo | None) -> Finding:
    if info is None:
        return Finding("converted", directory, UNVERIFIED, "not in the registry")
    meta = read_meta(directory, info)
    if meta is None:
        why = "made from another registry entry or conversion version, or meta.json unreadable"
        return Finding("converted", directory, STALE, f"{why}; rebuilt on next use")
    problems = cache_problems(directory, meta, full=True)
    if problems:
        return Finding("converted", directory, CORRUPT, "; ".join(problems))
    return Finding("converted", directory, OK)


def _downloads(directory: Path, info: DatasetInfo | None, lock: Lock) -> Iterator[Finding]:
    sources = {}
    if info is not None:
        for spec in info.files.values():
            for source in spec.sources:
                if source.kind == "url":
                    sources[download_names(source)[0]] = source
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        source = sources.get(path.name)
        if source is None:
            yield Finding("download", path, UNVERIFIED, "no registry source names this file")
            continue
        known, pinned_by = pinned_hash(source, lock)
        if known is None:
            detail = "not validated yet (not in the lock); it is downloaded afresh on next use"
            yield Finding("download", path, UNVERIFIED, detail)
            continue
        actual = file_hash(path, known)
        if actual != known:
            detail = f"{actual}, the {pinned_by} pins {known}; downloaded again on next use"
            yield Finding("download", path, CORRUPT, detail)
        else:
            yield Finding("download", path, OK)


def _blocks(root: Path) -> Iterator[Finding]:
    # Imported here: slaq.blocks imports this package's integrity helpers lazily too.
    from slaq.blocks import BlockSetError, open_blockset

    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        if directory.name.startswith("."):
            continue  # a temporary directory of an interrupted writer, never used
        try:
            open_blockset(directory, check="full")
        except BlockSetError as exc:
            yield Finding("blocks", directory, CORRUPT, str(exc))
        else:
            yield Finding("blocks", directory, OK)


def verify_data_dir(
    root: Path, registry: Registry, names: Sequence[str] | None = None
) -> list[Finding]:
    """Re-hash every cached artefact under ``root`` (or only those of ``names``)."""
    root = Path(root)
    if names:
        wanted = [registry.get(n).name for n in names]
    else:
        special = {"downloads", "blocks"}
        wanted = sorted(
            p.name
            for p in root.iterdir()
            if p.is_dir() and p.name not in special and (p / META_FILE).exists()
        )
    findings = []
    for name in wanted:
        directory = root / name
        if (directory / META_FILE).exists():
            findings.append(_converted(directory, registry.find(name)))
        elif names:
            findings.append(Finding("converted", directory, UNVERIFIED, "not cached"))
    lock = Lock.in_data_dir(root)
    downloads = root / "downloads"
    if downloads.is_dir():
        for directory in sorted(p for p in downloads.iterdir() if p.is_dir()):
            if not names or directory.name in wanted:
                findings += _downloads(directory, registry.find(directory.name), lock)
    if not names and (root / "blocks").is_dir():
        findings += _blocks(root / "blocks")
    return findings


def require_data_dir(root: Path) -> Path:
    """``root`` if it is a directory, else a DatasetError naming it."""
    if not Path(root).is_dir():
        raise DatasetError(f"data directory {root} does not exist (see `slaq datasets fetch`)")
    return Path(root)
