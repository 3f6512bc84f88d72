"""Conversion of verified raw files into arrays: IDX images, tables, LIBSVM text.

Each converter returns ``(X, y, meta)``; the conventions (standardization, one-hot columns,
dropped rows, the y coding) are described in datasets/README.md.
"""

from __future__ import annotations

import logging
import math
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from slaq.datasets.arrays import BLOCK_ROWS, Array
from slaq.datasets.raw import RawFile
from slaq.datasets.registry import DatasetError, DatasetInfo

log = logging.getLogger("slaq.datasets")

Converter = Callable[[DatasetInfo, Mapping[str, RawFile]], tuple[Array, np.ndarray, dict]]


def _standardize(X: np.ndarray) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Columns to zero mean, unit variance (float64 statistics, float32 result)."""
    mean = X.mean(axis=0, dtype=np.float64)
    std = X.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0  # constant columns stay 0 instead of NaN
    out = np.empty(X.shape, dtype=np.float32)
    for start in range(0, X.shape[0], BLOCK_ROWS):
        block = X[start : start + BLOCK_ROWS].astype(np.float64)
        out[start : start + BLOCK_ROWS] = (block - mean) / std
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


CONVERTERS: dict[str, Converter] = {
    "idx": _convert_idx,
    "table": _convert_table,
    "libsvm": _convert_libsvm,
}
