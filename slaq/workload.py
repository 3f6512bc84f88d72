"""Job specifications, seeded Poisson arrivals and the YAML workload file format.

A workload file looks like::

    name: demo
    jobs:
      - id: j00
        algorithm: logreg          # one of ALGORITHMS
        dataset: digits            # a dataset name (live runs) or "synthetic"
        arrival_s: 0.0
        max_iter: 100
        tol: 1.0e-4                # stop when relative improvement < tol ...
        patience: 3                # ... for this many iterations in a row
        params: {reg: 0.001}       # algorithm hyper-parameters
        curve: {family: sublinear} # simulator only: synthetic loss curve (see slaq.sim)
        work_s: 1.0                # simulator only: CPU seconds per iteration at one core

Every error names the file, the job and the field at fault.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import yaml

ALGORITHMS = ("logreg", "logreg_sgd", "svm", "linreg", "mlp", "kmeans", "gmm", "synthetic")
CURVE_FAMILIES = ("sublinear", "exponential", "noisy", "plateau")


class WorkloadError(ValueError):
    """A workload file or job spec is invalid."""


@dataclass(frozen=True)
class JobSpec:
    """One training job of a workload."""

    job_id: str
    algorithm: str
    dataset: str
    arrival_s: float
    max_iter: int = 100
    tol: float = 1e-4
    patience: int = 3
    params: Mapping[str, Any] = field(default_factory=dict)
    curve: Mapping[str, Any] | None = None
    work_s: float = 1.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form used in workload files and run metadata."""
        out = asdict(self)
        out["id"] = out.pop("job_id")
        out["params"] = dict(self.params)
        if self.curve is None:
            out.pop("curve")
        else:
            out["curve"] = dict(self.curve)
        return out


@dataclass(frozen=True)
class Workload:
    """An ordered set of jobs (sorted by arrival, then id)."""

    name: str
    jobs: tuple[JobSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form of the workload file."""
        return {"name": self.name, "jobs": [j.to_dict() for j in self.jobs]}


JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "algorithm", "dataset", "arrival_s"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": ["string", "integer"]},
        "algorithm": {"type": "string", "enum": list(ALGORITHMS)},
        "dataset": {"type": "string", "minLength": 1},
        "arrival_s": {"type": "number", "minimum": 0},
        "max_iter": {"type": "integer", "minimum": 1},
        "tol": {"type": "number", "minimum": 0},
        "patience": {"type": "integer", "minimum": 1},
        "params": {"type": "object"},
        "curve": {
            "type": "object",
            "required": ["family"],
            "properties": {"family": {"type": "string", "enum": list(CURVE_FAMILIES)}},
        },
        "work_s": {"type": "number", "exclusiveMinimum": 0},
        "seed": {"type": "integer"},
    },
}

WORKLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["jobs"],
    "properties": {
        "name": {"type": "string"},
        "jobs": {"type": "array", "minItems": 1},
    },
}


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "required":
        return f"missing field: {error.message}"
    if error.validator == "additionalProperties":
        return f"unknown field: {error.message}"
    where = ".".join(str(p) for p in error.absolute_path) or "(job)"
    return f"field {where!r}: {error.message}"


def parse_workload(data: Any, source: str = "<workload>") -> Workload:
    """Validate a workload mapping and build a :class:`Workload`."""
    try:
        jsonschema.validate(data, WORKLOAD_SCHEMA)
    except jsonschema.ValidationError as exc:
        raise WorkloadError(f"{source}: {_describe(exc)}") from None
    validator = jsonschema.Draft202012Validator(JOB_SCHEMA)
    jobs: list[JobSpec] = []
    seen: set[str] = set()
    for index, raw in enumerate(data["jobs"]):
        label = raw.get("id", f"#{index}") if isinstance(raw, Mapping) else f"#{index}"
        errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
        if errors:
            raise WorkloadError(f"{source}: job {label!r}: {_describe(errors[0])}")
        job_id = str(raw["id"])
        if job_id in seen:
            raise WorkloadError(f"{source}: job {job_id!r}: field 'id': duplicate job id")
        seen.add(job_id)
        if not math.isfinite(float(raw["arrival_s"])):
            raise WorkloadError(f"{source}: job {job_id!r}: field 'arrival_s' is not finite")
        jobs.append(
            JobSpec(
                job_id=job_id,
                algorithm=raw["algorithm"],
                dataset=raw["dataset"],
                arrival_s=float(raw["arrival_s"]),
                max_iter=int(raw.get("max_iter", 100)),
                tol=float(raw.get("tol", 1e-4)),
                patience=int(raw.get("patience", 3)),
                params=dict(raw.get("params", {})),
                curve=dict(raw["curve"]) if "curve" in raw else None,
                work_s=float(raw.get("work_s", 1.0)),
                seed=int(raw.get("seed", index)),
            )
        )
    jobs.sort(key=lambda j: (j.arrival_s, j.job_id))
    return Workload(name=str(data.get("name", Path(source).stem)), jobs=tuple(jobs))


def load_workload(path: str | Path) -> Workload:
    """Read and validate a YAML workload file."""
    path = Path(path)
    if not path.exists():
        raise WorkloadError(f"workload file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise WorkloadError(f"{path}: not valid YAML: {exc}") from None
    return parse_workload(data, str(path))


def save_workload(workload: Workload, path: str | Path) -> None:
    """Write a workload file atomically."""
    from slaq.traces import write_text_atomic

    write_text_atomic(Path(path), yaml.safe_dump(workload.to_dict(), sort_keys=False))


def poisson_arrivals(n: int, mean_interarrival_s: float, seed: int) -> np.ndarray:
    """Arrival times of ``n`` jobs of a Poisson process; the first job arrives at 0."""
    if n <= 0:
        return np.zeros(0)
    if mean_interarrival_s < 0:
        raise WorkloadError("mean inter-arrival time must be non-negative")
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(mean_interarrival_s, size=n - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def poisson_workload(
    templates: Sequence[Mapping[str, Any]],
    n_jobs: int,
    mean_interarrival_s: float,
    seed: int,
    name: str = "poisson",
) -> Workload:
    """Draw ``n_jobs`` from ``templates`` (uniformly, seeded) with Poisson arrivals.

    A template is a job mapping without ``id`` and ``arrival_s``; a ``weight`` key biases the
    draw.
    """
    if not templates:
        raise WorkloadError("a Poisson workload needs at least one job template")
    rng = np.random.default_rng(seed)
    weights = np.array([float(t.get("weight", 1.0)) for t in templates])
    choice = rng.choice(len(templates), size=n_jobs, p=weights / weights.sum())
    arrivals = poisson_arrivals(n_jobs, mean_interarrival_s, seed + 1)
    jobs = []
    width = len(str(max(n_jobs - 1, 0)))
    for i, (t_index, arrival) in enumerate(zip(choice, arrivals, strict=True)):
        raw = {k: v for k, v in templates[t_index].items() if k != "weight"}
        raw.update(id=f"j{i:0{width}d}", arrival_s=round(float(arrival), 6), seed=seed * 100003 + i)
        jobs.append(raw)
    return parse_workload({"name": name, "jobs": jobs}, f"<{name}>")
