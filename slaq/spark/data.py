"""Data preparation for live runs: datasets written once as memory-mapped blocks, job windows.

A job's data lives in many more blocks than task slots (docs/design.md §2, §7), written once per
run (or reused from the data directory) and memory-mapped by the tasks; a job's sub-sample is a
seeded window of every block, not a copy.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slaq.blocks import BlockSet, BlockSetError, open_blockset, write_blocks
from slaq.spark.context import Item
from slaq.workload import JobSpec

log = logging.getLogger(__name__)

# Keys of a job's ``params`` that the engine consumes (the rest go to the trainer).
ENGINE_PARAMS = ("rows",)
MIN_BLOCKS = 48
BLOCKS_PER_CORE = 4
# Task names of slaq.datasets whose labels are class indices.
CLASSIFICATION_TASKS = ("classification", "binary", "multiclass")


@dataclass(frozen=True)
class JobData:
    """A dataset as written to blocks for one run."""

    dataset: str
    task: str
    blockset: BlockSet
    n_classes: int | None

    @property
    def n_features(self) -> int:
        """Columns of X."""
        return self.blockset.n_features


TrainerFactory = Callable[[JobSpec, int, int, Mapping[str, Any]], Any]
"""``factory(spec, n_features, n_outputs, trainer_params) -> Trainer``."""


def default_trainer_factory(
    spec: JobSpec, n_features: int, n_outputs: int, params: Mapping[str, Any]
) -> Any:
    """Trainer from the algorithm registry, seeded with the job's seed."""
    from slaq.algorithms import make_trainer

    return make_trainer(spec.algorithm, n_features, n_outputs, params, spec.seed)


def trainer_params(spec: JobSpec) -> dict[str, Any]:
    """The job's parameters without the ones the engine consumes (``rows``)."""
    return {k: v for k, v in spec.params.items() if k not in ENGINE_PARAMS}


def n_outputs_for(spec: JobSpec, data: JobData) -> int:
    """Classes for classifiers, ``k`` for k-means/GMM, 1 for regression."""
    if spec.algorithm in ("kmeans", "gmm"):
        if "k" not in spec.params:
            raise ValueError(f"job {spec.job_id!r}: {spec.algorithm} needs params.k")
        return int(spec.params["k"])
    if spec.algorithm == "linreg":
        return 1
    if data.n_classes is None:
        raise ValueError(
            f"job {spec.job_id!r}: {spec.algorithm} needs class labels but dataset "
            f"{data.dataset!r} is a {data.task} data set"
        )
    return data.n_classes


def job_items(blockset: BlockSet, rows: int | None, seed: Sequence[int]) -> list[Item]:
    """The row windows a job trains on: all rows, or a seeded ``rows``-row sub-sample.

    A sub-sample takes a contiguous window at a seeded offset from every block, in proportion
    to the block's size, so the job keeps all blocks (full parallelism, even tasks) and the
    windows are slices of the memory map (no copy). Rows were shuffled when the blocks were
    written, so a window is a random sample.
    """
    sizes = np.asarray(blockset.rows_per_block, dtype=np.int64)
    if rows is None or int(rows) >= blockset.n_rows:
        return [(i, 0, int(s)) for i, s in enumerate(sizes)]
    rows = int(rows)
    if rows < 1:
        raise ValueError(f"params.rows must be >= 1, got {rows}")
    rng = np.random.default_rng(list(seed))
    if rows < blockset.n_blocks:
        take = np.zeros(blockset.n_blocks, dtype=np.int64)
        take[rng.choice(blockset.n_blocks, size=rows, replace=False)] = 1
    else:
        quota = rows * sizes / sizes.sum()
        take = np.floor(quota).astype(np.int64)
        extra = rows - int(take.sum())
        take[np.argsort(-(quota - take), kind="stable")[:extra]] += 1
        take = np.minimum(take, sizes)
    items = []
    for i, (size, n) in enumerate(zip(sizes, take, strict=True)):
        if n > 0:
            start = int(rng.integers(0, size - n + 1))
            items.append((i, start, start + int(n)))
    return items


def _fingerprint(X: Any, y: Any) -> str:
    """Cheap content hash (shape, dtype and a strided row sample) naming cached blocks."""
    h = hashlib.blake2b(digest_size=8)
    h.update(repr((X.shape, str(X.dtype), np.asarray(y).shape)).encode())
    step = max(1, X.shape[0] // 256)
    sample = X[::step]
    sample = sample.toarray() if hasattr(sample, "toarray") else np.asarray(sample)
    h.update(np.ascontiguousarray(sample).tobytes())
    h.update(np.ascontiguousarray(np.asarray(y)[::step]).tobytes())
    return h.hexdigest()


def prepare_dataset(name: str, dataset: Any, root: Path, n_blocks: int, seed: int) -> JobData:
    """Write ``dataset`` (``.X``, ``.y``, ``.task``) once as shuffled memory-mapped blocks.

    Block sets are named by dataset, size, block count, seed and a content fingerprint, so a
    shared cache directory is reused safely across runs.
    """
    X, y = dataset.X, dataset.y
    n_rows = int(X.shape[0])
    nb = max(1, min(n_blocks, n_rows))
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    directory = root / f"{safe}-{n_rows}x{X.shape[1]}-b{nb}-s{seed}-{_fingerprint(X, y)}"
    task = str(getattr(dataset, "task", "classification"))
    labels = np.asarray(y) if y is not None else None
    n_classes = None
    if task in CLASSIFICATION_TASKS and labels is not None:
        n_classes = int(max(np.unique(labels).size, int(labels.max()) + 1))
    try:
        blockset = open_blockset(directory)
        log.info("reusing blocks of %s in %s", name, directory)
    except BlockSetError as exc:
        # A damaged reusable block set is rebuilt from the (verified) dataset, not trusted.
        corrupt = directory.exists()
        if corrupt:
            log.warning("rebuilding the blocks of %s: %s", name, exc)
        perm = np.random.default_rng(seed).permutation(n_rows)
        log.info("writing %s (%d x %d) as %d blocks to %s", name, n_rows, X.shape[1], nb, directory)
        labels_perm = None if y is None else labels[perm]
        try:
            blockset = write_blocks(X[perm], labels_perm, directory, nb, overwrite=corrupt)
        except FileExistsError:  # a concurrent run wrote the same block set first
            blockset = open_blockset(directory)
    return JobData(dataset=name, task=task, blockset=blockset, n_classes=n_classes)


def default_dataset_loader(data_dir: Path | None, seed: int) -> Callable[[str], Any]:
    """Loader of named data sets through :func:`slaq.datasets.load_dataset`."""

    def load(name: str) -> Any:
        from slaq.datasets import load_dataset

        return load_dataset(name, cache_dir=data_dir, seed=seed)

    return load


def prior_work_s(spec: JobSpec, data: JobData, items: Sequence[Item]) -> float:
    """One-core CPU seconds per iteration predicted before the job has run."""
    try:
        from slaq.algorithms import estimate_iteration_cpu_s

        rows = sum(b - a for _, a, b in items)
        return float(
            estimate_iteration_cpu_s(
                spec.algorithm,
                rows,
                data.n_features,
                n_outputs_for(spec, data),
                trainer_params(spec),
            )
        )
    except Exception:  # no cost model for this algorithm: the runtime model learns quickly
        return spec.work_s


def n_blocks_for(total_cores: int) -> int:
    """Blocks per data set: many more than slots, so coalescing to any allocation is even."""
    return max(MIN_BLOCKS, BLOCKS_PER_CORE * total_cores)
