"""Data blocks on disk, memory-mapped by whoever trains on them, and an in-process executor.

A block set is a directory of ``X_00000.npy``/``y_00000.npy`` pairs plus ``blockset.json``.
Blocks are memory-mapped rather than shipped through Spark's pickled RDD cache: a task then
carries only block ids and every Python worker on the machine shares the page cache (docs/design.md
§7). Large sparse matrices are stored as ``X_00000.npz`` CSR pieces (loaded, not mapped).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from slaq.algorithms.base import BlockFn, ConvergenceRule, StopTraining, TrainContext

# 2: blockset.json records each file's size and SHA-256 ("files"); 1 had no digests.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
META_FILE = "blockset.json"
# Sparse data is densified when the dense copy stays below this size: dense blocks can be
# memory-mapped and use BLAS, which beats CSR for the moderately sparse sets used here.
DENSE_LIMIT_BYTES = 256 * 2**20
# Each memmap holds a duplicated file descriptor; bound how many a worker keeps open.
CACHE_MAX_BLOCKS = 512


class BlockSetError(ValueError):
    """A block directory is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class BlockSet:
    """A directory of row blocks of one data set."""

    directory: Path
    n_blocks: int
    n_rows: int
    n_features: int
    rows_per_block: tuple[int, ...]
    dtype: str = "float32"
    sparse: bool = False

    def block_rows(self, blocks: Sequence[int] | None = None) -> int:
        """Total rows of the listed blocks (all if None)."""
        if blocks is None:
            return self.n_rows
        return sum(self.rows_per_block[i] for i in blocks)


def split_sizes(n_rows: int, n_blocks: int) -> tuple[int, ...]:
    """Contiguous split sizes: the first n_rows % n_blocks blocks get one extra row."""
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
    if n_rows < n_blocks:
        raise ValueError(f"cannot split {n_rows} rows into {n_blocks} non-empty blocks")
    base, extra = divmod(n_rows, n_blocks)
    return tuple(base + (1 if i < extra else 0) for i in range(n_blocks))


def _x_name(i: int, sparse: bool) -> str:
    return f"X_{i:05d}.npz" if sparse else f"X_{i:05d}.npy"


def _y_name(i: int) -> str:
    return f"y_{i:05d}.npy"


def _prepare_xy(X: Any, y: np.ndarray | None, dtype: np.dtype) -> tuple[Any, np.ndarray, bool]:
    """Validated X (CSR if sparse), y in its stored dtype, and whether X is stored sparse."""
    if dtype.kind != "f":
        raise ValueError(f"block dtype must be floating, got {dtype}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    n_rows, n_features = X.shape
    if y is None:
        y = np.zeros(n_rows, dtype=dtype)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_rows:
        raise ValueError(f"y must be 1-D with {n_rows} entries, got shape {y.shape}")
    y = y.astype(np.int32) if y.dtype.kind in "iub" else y.astype(dtype)
    store_sparse = False
    if sp.issparse(X):
        X = X.tocsr()
        store_sparse = n_rows * n_features * dtype.itemsize > DENSE_LIMIT_BYTES
    return X, y, store_sparse


def _write_files(
    tmp: Path, X: Any, y: np.ndarray, sizes: Sequence[int], dtype: np.dtype, sparse: bool
) -> dict[str, dict[str, Any]]:
    """Write every block pair into ``tmp``; the size and SHA-256 of each file written."""
    from slaq.datasets.integrity import file_record

    records: dict[str, dict[str, Any]] = {}
    start = 0
    for i, size in enumerate(sizes):
        part = X[start : start + size]
        x_path, y_path = tmp / _x_name(i, sparse), tmp / _y_name(i)
        if sparse:
            sp.save_npz(x_path, part.astype(dtype), compressed=False)
        else:
            part = part.toarray() if sp.issparse(part) else part
            np.save(x_path, np.ascontiguousarray(part, dtype=dtype))
        np.save(y_path, np.ascontiguousarray(y[start : start + size]))
        records[x_path.name] = file_record(x_path)
        records[y_path.name] = file_record(y_path)
        start += size
    return records


def write_blocks(
    X: Any,
    y: np.ndarray | None,
    directory: Path,
    n_blocks: int,
    dtype: Any = np.float32,
    overwrite: bool = False,
) -> BlockSet:
    """Split rows of X (dense ndarray or scipy.sparse) and y into contiguous blocks on disk.

    The split is contiguous, so shuffle rows beforehand if the source is sorted (k-means
    seeding and step-size estimates look at block 0). Integer labels are stored as int32,
    real targets in ``dtype``; ``y=None`` (unsupervised) stores zeros. The directory appears
    atomically: everything is written to a sibling temporary directory that is renamed into
    place, so readers never see a partial block set. ``blockset.json`` records each file's
    size and SHA-256 (checked by :func:`open_blockset`). Files and the directory get the
    umask's modes. An existing directory raises FileExistsError unless ``overwrite``.
    """
    # Imported here: executors import this module for load_block only and should not pay
    # for pyarrow and pandas at start-up.
    from slaq.traces import honour_umask

    directory = Path(directory)
    dtype = np.dtype(dtype)
    X, y, store_sparse = _prepare_xy(X, y, dtype)
    n_rows, n_features = X.shape
    sizes = split_sizes(n_rows, n_blocks)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"block directory {directory} already exists")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        # mkdtemp makes it 0700: workers running as another user could not read the blocks.
        honour_umask(tmp, directory=True)
        files = _write_files(tmp, X, y, sizes, dtype, store_sparse)
        meta = {
            "version": FORMAT_VERSION,
            "n_blocks": n_blocks,
            "n_rows": n_rows,
            "n_features": n_features,
            "rows_per_block": list(sizes),
            "dtype": dtype.name,
            "sparse": store_sparse,
            "y_dtype": y.dtype.name,
            "files": files,
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
        _install(tmp, directory, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_blockset(directory, check="cheap")


def _install(tmp: Path, directory: Path, overwrite: bool) -> None:
    """Rename a finished temporary directory into place (replacing an old one if allowed)."""
    if overwrite and directory.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
        os.replace(directory, trash / "old")
        try:
            os.rename(tmp, directory)
        finally:
            shutil.rmtree(trash, ignore_errors=True)
        return
    try:
        os.rename(tmp, directory)
    except OSError as exc:
        # rename onto an existing non-empty directory fails: another writer got there first.
        raise FileExistsError(f"block directory {directory} already exists") from exc


def _read_meta(directory: Path) -> dict[str, Any]:
    meta_path = directory / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise BlockSetError(f"{directory} is not a block set (no {META_FILE})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BlockSetError(f"cannot read {meta_path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("version") not in READABLE_VERSIONS:
        version = meta.get("version") if isinstance(meta, dict) else None
        raise BlockSetError(f"{meta_path}: unsupported version {version!r}")
    return meta


def _parse_meta(directory: Path, meta: dict[str, Any]) -> BlockSet:
    meta_path = directory / META_FILE
    try:
        sizes = tuple(int(s) for s in meta["rows_per_block"])
        bs = BlockSet(
            directory=directory,
            n_blocks=int(meta["n_blocks"]),
            n_rows=int(meta["n_rows"]),
            n_features=int(meta["n_features"]),
            rows_per_block=sizes,
            dtype=str(meta["dtype"]),
            sparse=bool(meta["sparse"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BlockSetError(f"{meta_path}: malformed metadata ({exc})") from exc
    if len(sizes) != bs.n_blocks or sum(sizes) != bs.n_rows:
        raise BlockSetError(f"{meta_path}: rows_per_block disagrees with n_blocks/n_rows")
    return bs


def blockset_problems(bs: BlockSet, meta: dict[str, Any], full: bool) -> list[str]:
    """Block files that are missing or differ from ``blockset.json`` (empty: intact).

    Always checks sizes and ``.npy`` headers (shape, dtype); ``full`` also re-hashes every
    file against its recorded SHA-256. Version-1 block sets recorded no digests.
    """
    from slaq.datasets.integrity import check_npy_header, check_records

    names = [n for i in range(bs.n_blocks) for n in (_x_name(i, bs.sparse), _y_name(i))]
    missing = [n for n in names if not (bs.directory / n).is_file()]
    if missing:
        return [f"{bs.directory}: missing block files {missing[:5]}"]
    records = meta.get("files")
    if records is not None:
        if set(records) != set(names):
            return [f"{bs.directory / META_FILE}: records other files than the blocks"]
        problems = check_records(bs.directory, records, full=full)
        if problems:
            return problems
    y_dtype = meta.get("y_dtype")
    problems = []
    for i, rows in enumerate(bs.rows_per_block):
        if not bs.sparse:
            shape = (rows, bs.n_features)
            problems.append(check_npy_header(bs.directory / _x_name(i, False), shape, bs.dtype))
        problems.append(check_npy_header(bs.directory / _y_name(i), (rows,), y_dtype))
    return [p for p in problems if p is not None]


def open_blockset(directory: Path, *, check: Literal["full", "cheap"] = "full") -> BlockSet:
    """Read a block directory's metadata and check its files; BlockSetError naming a bad one.

    ``check="full"`` verifies every file against the SHA-256 recorded when it was written;
    ``"cheap"`` checks sizes and headers only (catches truncation, not flipped bytes).
    """
    directory = Path(directory)
    meta = _read_meta(directory)
    bs = _parse_meta(directory, meta)
    problems = blockset_problems(bs, meta, full=check == "full")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BlockSetError(f"corrupt block set: {problems[0]}{more}")
    return bs


_cache: OrderedDict[tuple[str, int], tuple[tuple[int, int], Any, np.ndarray]] = OrderedDict()


def load_block(directory: str | Path, i: int) -> tuple[Any, np.ndarray]:
    """Block i as (X, y): np.memmap for dense blocks, CSR for sparse ones; cached per process.

    The cache is keyed by (directory, i) and revalidated by the file's inode and mtime, so a
    block set rewritten in place (overwrite=True) is never served stale.
    """
    directory = os.fspath(directory)
    key = (directory, int(i))
    x_path = os.path.join(directory, _x_name(i, False))
    sparse = False
    try:
        st = os.stat(x_path)
    except FileNotFoundError:
        x_path = os.path.join(directory, _x_name(i, True))
        sparse = True
        try:
            st = os.stat(x_path)
        except FileNotFoundError:
            raise BlockSetError(f"{directory}: no block {i}") from None
    stamp = (st.st_ino, st.st_mtime_ns)
    hit = _cache.get(key)
    if hit is not None and hit[0] == stamp:
        _cache.move_to_end(key)
        return hit[1], hit[2]
    X = sp.load_npz(x_path).tocsr() if sparse else np.load(x_path, mmap_mode="r")
    y = np.load(os.path.join(directory, _y_name(i)), mmap_mode="r")
    _cache[key] = (stamp, X, y)
    _cache.move_to_end(key)
    while len(_cache) > CACHE_MAX_BLOCKS:
        _cache.popitem(last=False)
    return X, y


def clear_block_cache() -> None:
    """Drop every cached block (releases memmaps and their file descriptors)."""
    _cache.clear()


def add_partials(acc: tuple | None, part: tuple) -> tuple:
    """Elementwise sum of two block-function results (acc=None starts a sum)."""
    if not isinstance(part, tuple):
        raise TypeError(f"block functions must return a tuple, got {type(part).__name__}")
    if acc is None:
        return part
    if len(acc) != len(part):
        raise ValueError(f"block results differ in length: {len(acc)} vs {len(part)}")
    return tuple(a + b for a, b in zip(acc, part, strict=True))


class LocalContext(TrainContext):
    """In-process executor over a block set; used by tests, the simulator's curves and benches."""

    def __init__(
        self,
        blockset: BlockSet,
        blocks: Sequence[int] | None = None,
        max_iter: int = 100,
        tol: float = 0.0,
        patience: int = 3,
    ) -> None:
        ids = list(range(blockset.n_blocks)) if blocks is None else [int(b) for b in blocks]
        if not ids:
            raise ValueError("a job needs at least one block")
        bad = [b for b in ids if not 0 <= b < blockset.n_blocks]
        if bad:
            raise ValueError(f"block ids {bad} outside 0..{blockset.n_blocks - 1}")
        self.blockset = blockset
        self.block_ids = ids  # job-local block j is blockset block block_ids[j]
        self.n_blocks = len(ids)
        self.n_rows = blockset.block_rows(ids)
        self.rule = ConvergenceRule(max_iter, tol, patience)
        self.objectives: list[float] = []
        self.calls: list[str] = []  # "map_reduce" / "report", to check the protocol
        # One-core CPU seconds per reported iteration: every map_reduce since the previous
        # report (line-search trials, and the setup call for the first iteration).
        self.cpu_s: list[float] = []
        self._cpu_pending = 0.0

    def map_reduce(self, fn: BlockFn, params: Any, blocks: Sequence[int] | None = None) -> tuple:
        """Apply fn(params, X, y) to each listed job-local block and sum the results."""
        local = range(self.n_blocks) if blocks is None else blocks
        cpu0 = time.process_time()
        acc: tuple | None = None
        for j in local:
            if not 0 <= j < self.n_blocks:
                raise IndexError(f"block {j} outside this job's 0..{self.n_blocks - 1}")
            X, y = load_block(self.blockset.directory, self.block_ids[j])
            acc = add_partials(acc, fn(params, X, y))
        if acc is None:
            raise ValueError("map_reduce over no blocks")
        self._cpu_pending += time.process_time() - cpu0
        self.calls.append("map_reduce")
        return acc

    def report(self, objective: float) -> None:
        """Record one iteration's objective; raise StopTraining when the rule says stop."""
        self.calls.append("report")
        self.objectives.append(float(objective))
        self.cpu_s.append(self._cpu_pending)
        self._cpu_pending = 0.0
        if self.rule.update(objective):
            raise StopTraining(self.rule.reason)

    @property
    def stop_reason(self) -> str | None:
        """Why the context stopped the job (None if the trainer stopped on its own)."""
        return self.rule.reason
