"""Curve library: full-length loss curves recorded from the real trainers (docs/design.md §2).

Every template (algorithm x dataset x hyper-parameters) runs in-process with the trainer code
the engine uses, on the blocks and row windows the engine would give it
(:mod:`slaq.spark.data`), for at least ``min_iterations`` iterations and on until the template's
tolerance says converged (or ``max_iterations``). Each iteration's loss and one-core CPU seconds
(``time.process_time`` with BLAS held to one thread) go to a long-format Parquet file, one row
per (template, iteration), with a hash of the data the curve came from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from slaq.algorithms import make_trainer
from slaq.algorithms.base import BlockFn, ConvergenceRule, StopTraining
from slaq.blocks import BlockSet, LocalContext, add_partials

log = logging.getLogger(__name__)

CURVE_SCHEMA = pa.schema(
    [
        ("template_id", pa.string()),
        ("algorithm", pa.string()),
        ("dataset", pa.string()),
        ("params_json", pa.string()),
        ("iteration", pa.int64()),
        ("loss", pa.float64()),
        ("cpu_s", pa.float64()),
        ("data_hash", pa.string()),
    ]
)
DEFAULT_MIN_ITERATIONS = 300
# Without --max-iterations a curve may run on this many times min_iterations to converge.
DEFAULT_MAX_FACTOR = 4


@dataclass(frozen=True)
class CurveRecord:
    """One template's recorded curve."""

    template_id: str
    algorithm: str
    dataset: str
    losses: np.ndarray
    cpu_s_per_iter: float
    data_hash: str


def params_json(params: Mapping[str, Any] | None) -> str:
    """Canonical JSON of a template's params (sorted keys), as stored in the library."""
    return json.dumps(dict(params or {}), sort_keys=True, separators=(",", ":"))


def template_id(template: Mapping[str, Any]) -> str:
    """Stable id of a template: algorithm, dataset and a digest of its params."""
    key = f"{template['algorithm']}|{template['dataset']}|{params_json(template.get('params'))}"
    digest = hashlib.blake2b(key.encode(), digest_size=4).hexdigest()
    return f"{template['algorithm']}-{template['dataset']}-{digest}"


class WindowContext(LocalContext):
    """LocalContext over the engine's row windows, with the curve library's stopping rule.

    A map_reduce runs the engine's own task body (:func:`slaq.spark.context.run_partition`)
    over the listed windows, i.e. the job on one core. The job stops after ``max_iter``
    iterations, or once it has done ``min_iter`` and the template's tolerance rule says
    converged; a trainer may also stop on its own (converged to float precision).
    """

    def __init__(
        self,
        blockset: BlockSet,
        items: Sequence[tuple[int, int, int]],
        min_iter: int,
        max_iter: int,
        tol: float,
        patience: int = 3,
    ) -> None:
        super().__init__(blockset, max_iter=max_iter, tol=0.0)
        self.items = [tuple(int(v) for v in item) for item in items]
        self.n_blocks = len(self.items)
        self.n_rows = sum(stop - start for _, start, stop in self.items)
        self.min_iter = int(min_iter)
        self.tol_rule = ConvergenceRule(10**12, tol, patience) if tol > 0 else None

    def map_reduce(self, fn: BlockFn, params: Any, blocks: Sequence[int] | None = None) -> tuple:
        """Sum ``fn`` over the listed job-local windows (all if None) with the engine's task."""
        from slaq.spark.context import run_partition

        local = range(self.n_blocks) if blocks is None else blocks
        selected = []
        for j in local:
            if not 0 <= j < self.n_blocks:
                raise IndexError(f"block {j} outside this job's 0..{self.n_blocks - 1}")
            selected.append(self.items[j])
        cpu0 = time.process_time()
        acc = None
        for part, *_ in run_partition(fn, params, str(self.blockset.directory), selected):
            acc = add_partials(acc, part) if part is not None else acc
        if acc is None:
            raise ValueError("map_reduce over no blocks")
        self._cpu_pending += time.process_time() - cpu0
        self.calls.append("map_reduce")
        return acc

    def report(self, objective: float) -> None:
        """Record an iteration; stop on max_iter, or on the tolerance after min_iter."""
        super().report(objective)
        converged = self.tol_rule is not None and self.tol_rule.update(objective)
        if converged and len(self.objectives) >= self.min_iter:
            raise StopTraining("converged")


def data_hash(blockset: BlockSet, items: Sequence[tuple[int, int, int]]) -> str:
    """Digest of the block set (its name carries the content fingerprint) and the windows."""
    h = hashlib.blake2b(digest_size=8)
    h.update(Path(blockset.directory).name.encode())
    h.update(json.dumps([list(map(int, item)) for item in items]).encode())
    return h.hexdigest()


def _n_outputs(algorithm: str, params: Mapping[str, Any], n_classes: int | None, name: str) -> int:
    if algorithm in ("kmeans", "gmm"):
        if "k" not in params:
            raise ValueError(f"template {name}: {algorithm} needs params.k")
        return int(params["k"])
    if algorithm == "linreg":
        return 1
    if n_classes is None:
        raise ValueError(f"template {name}: {algorithm} needs a classification data set")
    return int(n_classes)


def run_template(
    template: Mapping[str, Any],
    data_dir: Path,
    min_iterations: int,
    max_iterations: int,
    seed: int,
    n_blocks: int | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Run one template in-process; return (losses, cpu_s per iteration, data hash)."""
    from threadpoolctl import threadpool_limits

    from slaq.algorithms.validate import validate_job
    from slaq.spark.data import MIN_BLOCKS, default_dataset_loader, job_items, prepare_dataset

    name = template_id(template)
    algorithm, params = str(template["algorithm"]), dict(template.get("params") or {})
    dataset = default_dataset_loader(Path(data_dir), seed)(str(template["dataset"]))
    data = prepare_dataset(
        str(template["dataset"]), dataset, Path(data_dir) / "blocks", n_blocks or MIN_BLOCKS, seed
    )
    n_outputs = _n_outputs(algorithm, params, data.n_classes, name)
    validate_job(name, algorithm, params, dataset.X, dataset.y, n_outputs)
    rows = params.pop("rows", None)
    items = job_items(data.blockset, None if rows is None else int(rows), (seed, seed))
    trainer = make_trainer(algorithm, data.n_features, n_outputs, params, seed)
    ctx = WindowContext(
        data.blockset, items, min_iterations, max_iterations, float(template.get("tol", 0.0))
    )
    with threadpool_limits(limits=1):
        trainer.run(ctx)
    return np.array(ctx.objectives), np.array(ctx.cpu_s), data_hash(data.blockset, items)


def build_curve_library(
    templates: Iterable[Mapping[str, Any]],
    data_dir: Path,
    out: Path,
    min_iterations: int = DEFAULT_MIN_ITERATIONS,
    max_iterations: int | None = None,
    seed: int = 0,
    processes: int = 1,
) -> Path:
    """Record every template's curve and write the library to ``out`` atomically.

    With ``processes`` > 1 templates run in that many worker processes, each still at one BLAS
    thread, so each curve's CPU seconds stay one-core figures.
    """
    from slaq.traces import write_table_atomic

    max_iterations = max_iterations or DEFAULT_MAX_FACTOR * min_iterations
    if min_iterations < 1 or max_iterations < min_iterations:
        raise ValueError(
            f"need 1 <= min_iterations <= max_iterations, got {min_iterations}, {max_iterations}"
        )
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    unique: dict[str, Mapping[str, Any]] = {}
    for template in templates:  # weights aside, a repeat would record the same curve
        unique.setdefault(template_id(template), template)
    task = partial(
        _timed_template, data_dir=data_dir, lo=min_iterations, hi=max_iterations, seed=seed
    )
    if processes == 1:
        results = list(map(task, unique.values()))
    else:
        pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
        with pool:
            results = list(pool.map(task, unique.values()))
    rows: list[dict[str, Any]] = []
    for (tid, template), result in zip(unique.items(), results, strict=True):
        losses, cpu, digest, seconds = result
        log.info("%s: %d iterations in %.0f s", tid, losses.size, seconds)
        rows.extend(_library_rows(tid, template, losses, cpu, digest))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table_atomic(rows, CURVE_SCHEMA, out)
    return out


def _timed_template(
    template: Mapping[str, Any], data_dir: Path, lo: int, hi: int, seed: int
) -> tuple[np.ndarray, np.ndarray, str, float]:
    t0 = time.monotonic()
    losses, cpu, digest = run_template(template, data_dir, lo, hi, seed)
    return losses, cpu, digest, time.monotonic() - t0


def _library_rows(
    tid: str, template: Mapping[str, Any], losses: np.ndarray, cpu: np.ndarray, digest: str
) -> list[dict[str, Any]]:
    pj = params_json(template.get("params"))
    return [
        {
            "template_id": tid,
            "algorithm": str(template["algorithm"]),
            "dataset": str(template["dataset"]),
            "params_json": pj,
            "iteration": i,
            "loss": float(loss),
            "cpu_s": float(c),
            "data_hash": digest,
        }
        for i, (loss, c) in enumerate(zip(losses, cpu, strict=True), start=1)
    ]


def load_curve_library(path: Path) -> list[CurveRecord]:
    """Read a curve library; one record per template, in file order."""
    import pyarrow.parquet as pq

    table = pq.read_table(Path(path), schema=CURVE_SCHEMA).to_pandas()
    records = []
    for tid, group in table.groupby("template_id", sort=False):
        group = group.sort_values("iteration")
        losses = group["loss"].to_numpy(dtype=np.float64, copy=True)
        losses.setflags(write=False)
        first = group.iloc[0]
        records.append(
            CurveRecord(
                template_id=str(tid),
                algorithm=str(first["algorithm"]),
                dataset=str(first["dataset"]),
                losses=losses,
                cpu_s_per_iter=float(np.median(group["cpu_s"].to_numpy())),
                data_hash=str(first["data_hash"]),
            )
        )
    return records
