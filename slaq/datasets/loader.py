"""Preparing a dataset: verified cache, else conversion from verified sources; loading it."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from slaq.datasets.arrays import Array, digest_arrays, subsample
from slaq.datasets.cache import (
    CACHE_VERSION,
    META_FILE,
    cache_problems,
    package_versions,
    read_arrays,
    read_meta,
    resolve_cache_dir,
    write_cache,
)
from slaq.datasets.convert import CONVERTERS
from slaq.datasets.download import RETRIES, discard_unvalidated, drop_decompressed, pin_validated
from slaq.datasets.lock import Lock, file_mutex
from slaq.datasets.registry import DatasetError, DatasetInfo, Registry, default_registry
from slaq.datasets.sources import acquire

log = logging.getLogger("slaq.datasets")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded, converted dataset: features X, targets y, and the cache's meta data."""

    name: str
    task: str
    X: Array
    y: np.ndarray
    meta: dict


def check_shape(info: DatasetInfo, X: Array, y: np.ndarray) -> None:
    """DatasetError unless converted arrays have the registry's shape and class count."""
    if tuple(X.shape) != tuple(info.shape) or y.shape != (X.shape[0],):
        raise DatasetError(
            f"{info.name}: converted data has shape {tuple(X.shape)} (y {y.shape}), the registry"
            f" says {tuple(info.shape)}; refusing to use a different dataset"
        )
    if info.n_classes is not None and info.tiny_of is None and info.task != "regression":
        found = len(np.unique(y))
        if found != info.n_classes:
            raise DatasetError(f"{info.name}: {found} classes, the registry says {info.n_classes}")


def _from_base(
    info: DatasetInfo, root: Path, allow_download: bool, registry: Registry, retries: int
) -> tuple[Array, np.ndarray, dict]:
    """A CI subset or derived set, from the (verified) cache of the set it comes from."""
    base_name = info.tiny_of or info.derive
    assert base_name is not None
    base = registry.get(base_name)
    base_dir = prepare(
        base.name,
        cache_dir=root,
        allow_download=allow_download,
        registry=registry,
        retries=retries,
    )
    base_meta = json.loads((base_dir / META_FILE).read_text())
    X, y = read_arrays(base_dir, base_meta, mmap_mode="r")
    extra: dict[str, Any] = {k: base_meta[k] for k in ("features", "target", "files")}
    extra["raw_rows"] = base_meta["raw_rows"]
    extra["dropped_rows"] = base_meta.get("dropped_rows", 0)
    if info.tiny_of:
        X, y = subsample(X, y, info.shape[0], seed=0)
        extra["subset_of"] = {"name": base.name, "rows": info.shape[0], "seed": 0}
    else:
        extra["derived_from"] = base.name
        extra["_link_from"] = base_dir
    y = np.asarray(y)
    check_shape(info, X, y)
    return X, y, extra


def _from_sources(
    info: DatasetInfo, root: Path, allow_download: bool, registry: Registry, retries: int
) -> tuple[Array, np.ndarray, dict]:
    """Convert verified raw files; pin unpinned downloads only once the arrays validated."""
    lock = Lock.in_data_dir(root)
    downloads = root / "downloads" / info.name
    raw = {
        role: acquire(
            info,
            spec,
            download_dir=downloads,
            lock=lock,
            allow_download=allow_download,
            retries=retries,
            keep_bytes=info.format == "idx",
        )
        for role, spec in info.files.items()
    }
    try:
        X, y, extra = CONVERTERS[info.format](info, raw)
        check_shape(info, X, y)
    except Exception:
        # A short or wrong first download must not be parsed again, nor pinned.
        discard_unvalidated(raw.values())
        raise
    finally:
        drop_decompressed(raw.values())
    pin_validated(raw.values(), lock, info.name)
    extra["files"] = {role: r.provenance() for role, r in raw.items()}
    extra.setdefault("dropped_rows", 0)
    return X, y, extra


def _build_cache(
    info: DatasetInfo,
    root: Path,
    allow_download: bool,
    registry: Registry,
    retries: int,
) -> None:
    """Convert a dataset and write its cache directory ``root/NAME``."""
    t0 = time.perf_counter()
    build = _from_base if (info.tiny_of or info.derive) else _from_sources
    X, y, extra = build(info, root, allow_download, registry, retries)
    link_from = extra.pop("_link_from", None)
    meta = {
        "name": info.name,
        "task": info.task,
        "description": info.description,
        "shape": list(X.shape),
        "n_classes": info.n_classes,
        "sparse": bool(sp.issparse(X)),
        "X_dtype": str(X.dtype),
        "y_dtype": str(y.dtype),
        **extra,
        "sha256": digest_arrays(X, y),
        "entry_digest": info.entry_digest,
        "cache_version": CACHE_VERSION,
        "versions": package_versions(),
    }
    write_cache(root / info.name, info, X, y, meta, link_from=link_from)
    log.info(
        "%s: %d x %d (%d rows dropped) -> %s in %.1f s",
        info.name,
        X.shape[0],
        X.shape[1],
        meta["dropped_rows"],
        root / info.name,
        time.perf_counter() - t0,
    )


def _verified(directory: Path, info: DatasetInfo) -> tuple[bool, list[str]]:
    """(cache usable, problems found): problems name the files that fail their digests."""
    meta = read_meta(directory, info)
    if meta is None:
        return False, []
    problems = cache_problems(directory, meta, full=True)
    return not problems, problems


def prepare(
    name: str,
    *,
    cache_dir: Path | str | None = None,
    allow_download: bool = False,
    registry: Registry | None = None,
    retries: int = RETRIES,
) -> Path:
    """Ensure the converted cache of a dataset exists, is current and intact; its directory.

    The cache's array files are checked against their recorded SHA-256 on every call; a
    corrupt cache is re-derived from its verified sources, and if that fails the error names
    the corrupt file.
    """
    registry = registry or default_registry()
    info = registry.get(name)
    root = resolve_cache_dir(cache_dir)
    directory = root / info.name
    # One preparer per dataset: another process could otherwise discard an unvalidated
    # download this one is parsing.
    with file_mutex(directory, "prepare"):
        ok, problems = _verified(directory, info)
        if ok:
            return directory
        for problem in problems:
            log.warning("%s; re-deriving %s from its verified sources", problem, info.name)
        try:
            _build_cache(info, root, allow_download, registry, retries)
        except DatasetError as exc:
            if problems:
                raise DatasetError(
                    f"{problems[0]}; re-deriving {info.name} failed: {exc}"
                ) from None
            raise
    return directory


def load_dataset(
    name: str,
    *,
    cache_dir: Path | str | None = None,
    max_rows: int | None = None,
    seed: int = 0,
    allow_download: bool = False,
    registry: Registry | None = None,
    mmap_mode: str | None = None,
) -> Dataset:
    """Load a converted dataset (preparing it first if needed), optionally a seeded subset."""
    registry = registry or default_registry()
    info = registry.get(name)
    directory = prepare(name, cache_dir=cache_dir, allow_download=allow_download, registry=registry)
    meta = json.loads((directory / META_FILE).read_text())
    X, y = read_arrays(directory, meta, mmap_mode=mmap_mode)
    if max_rows is not None and max_rows < X.shape[0]:
        X, y = subsample(X, y, max_rows, seed)
        meta = {**meta, "subsample": {"rows": max_rows, "seed": seed}, "shape": list(X.shape)}
    return Dataset(name=info.name, task=info.task, X=X, y=np.asarray(y), meta=meta)


def list_datasets(registry: Registry | None = None) -> list[DatasetInfo]:
    """Every registry entry, in registry order."""
    registry = registry or default_registry()
    return [registry.entries[n] for n in registry.names()]
