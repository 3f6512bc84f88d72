"""The policy contract shared by the live engine and the simulator (docs/design.md §2).

A policy is pure: it receives deep-frozen snapshots (:class:`ClusterView` and a sequence of
:class:`JobView`, read-only arrays and frozen models, no live objects) and returns a
:class:`Decision` (cores per job, plus optional predicted gains for the trace). Everything an
engine needs to know about a policy is declared in its :class:`PolicyTraits`; engines read
nothing else from it. It never touches Spark or a clock.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from slaq.predict import LossModel, fit_loss_model
from slaq.quality import normalized_changes

PREDICTORS_OR_NONE = (None, "curvefit", "geometric")
_EMPTY: Mapping[str, float] = MappingProxyType({})


class PolicyError(ValueError):
    """A policy could not be found, built, failed, or returned an invalid allocation."""


@dataclass(frozen=True)
class PolicyTraits:
    """What an engine needs to know about a policy, declared instead of probed.

    ``min_cores`` is the floor the policy gives a job it is not favouring (engines use it to
    tell when a job is starved); ``native_fair`` asks the live engine to run every iteration
    over all of a job's blocks and let Spark's FAIR pools share the slots; ``predictor`` names
    the loss model the decision loop fits for every job (``None``: the policy reads no loss
    model, so the loop fits none).
    """

    min_cores: int = 0
    native_fair: bool = False
    predictor: str | None = None

    def __post_init__(self) -> None:
        if self.min_cores < 0:
            raise ValueError(f"min_cores must be >= 0, got {self.min_cores}")
        if self.predictor not in PREDICTORS_OR_NONE:
            raise ValueError(
                f"predictor must be one of {PREDICTORS_OR_NONE}, not {self.predictor!r}"
            )


@dataclass(frozen=True)
class ClusterView:
    """What a policy may know about the cluster at a decision point."""

    total_cores: int
    epoch_s: float
    now_s: float


@dataclass(frozen=True)
class RuntimeFit:
    """A job's fitted iteration-time model ``t(n) = work_s / n + overhead_s``, frozen."""

    work_s: float
    overhead_s: float
    observations: tuple[tuple[int, float], ...] = ()

    def predict(self, cores: np.ndarray | float) -> np.ndarray:
        """Predicted seconds per iteration with ``cores`` tasks (infinite at 0 cores)."""
        cores = np.asarray(cores, float)
        with np.errstate(divide="ignore"):
            return np.where(
                cores > 0, self.work_s / np.maximum(cores, 1e-300) + self.overhead_s, np.inf
            )


def frozen_array(values: Any) -> np.ndarray:
    """A read-only float copy: a snapshot must not change under the policy, nor be changed by it."""
    out = np.array(values, dtype=float, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class JobView:
    """Deep-frozen snapshot of one active job, as a policy sees it.

    ``losses`` is a read-only copy; ``loss_model`` is the model the decision loop fitted with
    the policy's declared predictor (``None`` if it declared none); ``max_drop`` is the largest
    single-iteration drop so far, SLAQ's normalization scale (docs/design.md §1).
    """

    job_id: str
    arrival_s: float
    algorithm: str
    losses: np.ndarray
    runtime: RuntimeFit
    loss_model: LossModel | None = None
    max_drop: float = 0.0
    current_cores: int = 0
    max_cores: int | None = None
    # Time since the job last held more than the policy's floor (robust policies use it).
    starved_s: float = 0.0

    @classmethod
    def of(
        cls,
        job_id: str,
        losses: Sequence[float] | np.ndarray,
        *,
        arrival_s: float = 0.0,
        algorithm: str = "synthetic",
        runtime: RuntimeFit | None = None,
        predictor: str | None = "geometric",
        **fields: Any,
    ) -> JobView:
        """A view built from a plain loss list (tests, benchmarks, notebooks)."""
        arr = frozen_array(losses)
        drops = arr[:-1] - arr[1:]
        model = None if predictor is None else fit_loss_model(arr, predictor)
        return cls(
            job_id=job_id,
            arrival_s=arrival_s,
            algorithm=algorithm,
            losses=arr,
            runtime=runtime or RuntimeFit(1.0, 0.05),
            loss_model=model,
            max_drop=float(max(drops.max(), 0.0)) if drops.size else 0.0,
            **fields,
        )

    @property
    def iterations(self) -> int:
        """Iterations completed so far."""
        return int(self.losses.size)

    @property
    def last_loss(self) -> float:
        """Most recent loss (NaN before the first iteration)."""
        return float(self.losses[-1]) if self.losses.size else math.nan

    @property
    def normalized_losses(self) -> np.ndarray:
        """Per-iteration loss change over the largest change so far (docs/design.md §1)."""
        return normalized_changes(self.losses)

    @property
    def observations(self) -> tuple[tuple[int, float], ...]:
        """Observed ``(cores, wall seconds)`` per iteration (latest ones)."""
        return self.runtime.observations

    def model(self) -> LossModel:
        """The fitted loss model, or the prototype's geometric rule if none was fitted."""
        return (
            self.loss_model
            if self.loss_model is not None
            else fit_loss_model(self.losses, "geometric")
        )

    def predict_loss(self, k: float | np.ndarray) -> np.ndarray:
        """Predicted loss after ``k`` more iterations."""
        return self.model().predict_ahead(np.asarray(k, dtype=float))

    def predict_iteration_time(self, cores: int | np.ndarray) -> np.ndarray:
        """Predicted seconds per iteration with ``cores`` tasks."""
        return self.runtime.predict(cores)


@dataclass(frozen=True)
class Decision:
    """A policy's answer: cores per active job, and optionally its predicted gain per job."""

    cores: Mapping[str, int]
    gains: Mapping[str, float] = field(default_factory=lambda: _EMPTY)


@runtime_checkable
class Policy(Protocol):
    """A policy has a name, declared traits and a pure ``allocate``."""

    name: str
    traits: PolicyTraits

    def allocate(
        self, cluster: ClusterView, jobs: Sequence[JobView]
    ) -> Decision | Mapping[str, int]:
        """Cores per active job id (a plain mapping is accepted for simple policies)."""
        ...


def validate_allocation(
    policy_name: str,
    allocation: Mapping[str, Any],
    cluster: ClusterView,
    jobs: Sequence[JobView],
) -> dict[str, int]:
    """Check a policy's answer and return it as ``{job_id: int}`` for every active job."""
    active = {j.job_id for j in jobs}
    if not isinstance(allocation, Mapping):
        raise PolicyError(
            f"policy {policy_name!r} returned {type(allocation).__name__}, expected a mapping"
        )
    unknown = sorted(set(allocation) - active)
    if unknown:
        raise PolicyError(
            f"policy {policy_name!r} gave cores to unknown or inactive jobs: {unknown[:5]}"
        )
    clean: dict[str, int] = {}
    for job_id in (j.job_id for j in jobs):
        value = allocation.get(job_id, 0)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            if (
                isinstance(value, (float, np.floating))
                and math.isfinite(value)
                and value == int(value)
            ):
                value = int(value)
            else:
                raise PolicyError(
                    f"policy {policy_name!r} gave job {job_id!r} a non-integer core count {value!r}"
                )
        if value < 0:
            raise PolicyError(f"policy {policy_name!r} gave job {job_id!r} negative cores {value}")
        clean[job_id] = int(value)
    total = sum(clean.values())
    if total > cluster.total_cores:
        raise PolicyError(
            f"policy {policy_name!r} allocated {total} cores but the cluster has "
            f"{cluster.total_cores}"
        )
    return clean


def validate_decision(
    policy_name: str, raw: Any, cluster: ClusterView, jobs: Sequence[JobView]
) -> Decision:
    """Check a policy's answer; return it as a :class:`Decision` covering every active job."""
    if isinstance(raw, Decision):
        cores, gains = raw.cores, raw.gains
    else:
        cores, gains = raw, _EMPTY
    clean = validate_allocation(policy_name, cores, cluster, jobs)
    if not isinstance(gains, Mapping):
        raise PolicyError(f"policy {policy_name!r} returned gains of type {type(gains).__name__}")
    known = {j for j in clean if j in gains}
    out_gains = {j: float(gains[j]) for j in known}
    return Decision(MappingProxyType(clean), MappingProxyType(out_gains))


# --------------------------------------------------------------------------- registry

ENTRY_POINT_GROUP = "slaq.policies"


def _registered() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_policies() -> list[str]:
    """Names of every policy registered under the ``slaq.policies`` entry-point group."""
    return sorted(_registered())


def _resolve_dotted(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PolicyError(f"cannot import policy module {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise PolicyError(f"module {module_name!r} has no policy class {attr!r}") from exc


def load_policy(spec: str, **params: Any) -> Policy:
    """Build a policy from a registered name or a dotted path ``package.module:Class``."""
    if ":" in spec:
        factory = _resolve_dotted(spec)
    else:
        registered = _registered()
        if spec not in registered:
            raise PolicyError(
                f"unknown policy {spec!r}; known policies: {', '.join(sorted(registered))} "
                "(or give a dotted path package.module:Class)"
            )
        factory = registered[spec].load()
    try:
        policy = factory(**params)
    except TypeError as exc:
        raise PolicyError(f"cannot build policy {spec!r} with {params}: {exc}") from exc
    if not isinstance(policy, Policy):
        raise PolicyError(
            f"{spec!r} does not provide a name, traits (slaq.policy.PolicyTraits) and an "
            "allocate(cluster, jobs) method"
        )
    if not isinstance(policy.traits, PolicyTraits):
        raise PolicyError(f"{spec!r}: traits must be a slaq.policy.PolicyTraits")
    return policy


def parse_policy_args(pairs: Sequence[str]) -> dict[str, Any]:
    """Turn ``k=v`` strings into keyword parameters, parsing numbers and booleans."""
    import yaml

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise PolicyError(f"policy argument {pair!r} is not of the form key=value")
        params[key.strip()] = yaml.safe_load(raw)
    return params
