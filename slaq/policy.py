"""The policy contract shared by the live Spark engine and the simulator.

A policy is pure: it receives immutable snapshots (:class:`ClusterView` and a sequence of
:class:`JobView`) and returns a mapping ``job_id -> cores``. It never touches Spark or a clock.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import numpy as np

from slaq.predict import LossModel, RuntimeModel, fit_loss_model
from slaq.quality import LossHistory

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "slaq.policies"


class PolicyError(ValueError):
    """A policy could not be found, built, or returned an invalid allocation."""


@dataclass(frozen=True)
class ClusterView:
    """What a policy may know about the cluster at a decision point."""

    total_cores: int
    epoch_s: float
    now_s: float


@dataclass(frozen=True)
class JobView:
    """Immutable snapshot of one active job, as a policy sees it."""

    job_id: str
    arrival_s: float
    algorithm: str
    history: LossHistory
    runtime: RuntimeModel
    current_cores: int = 0
    max_cores: int | None = None
    # Time since the job last held more than its floor; filled by engines, used by robust policies.
    starved_s: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def iterations(self) -> int:
        """Iterations completed so far."""
        return len(self.history)

    @property
    def losses(self) -> np.ndarray:
        """Raw loss after each completed iteration."""
        return self.history.losses

    @property
    def normalized_losses(self) -> np.ndarray:
        """Per-iteration loss change divided by the largest change so far (docs/design.md §1)."""
        return self.history.normalized_changes()

    @property
    def observations(self) -> list[tuple[int, float]]:
        """Observed ``(cores, seconds)`` per iteration."""
        return self.runtime.observations

    def loss_model(self, predictor: str = "curvefit") -> LossModel:
        """Fitted loss-curve model for this job (memoized per history length)."""
        return self.history.model(predictor, fit_loss_model)

    def predict_loss(self, k: float | np.ndarray, predictor: str = "curvefit") -> np.ndarray:
        """Predicted loss after ``k`` more iterations."""
        return self.loss_model(predictor).predict_ahead(np.asarray(k, dtype=float))

    def predict_iteration_time(self, cores: int | np.ndarray) -> np.ndarray:
        """Predicted seconds per iteration with ``cores`` tasks."""
        return self.runtime.predict(np.asarray(cores, dtype=float))


@runtime_checkable
class Policy(Protocol):
    """Anything with a name and a pure ``allocate`` method is a policy."""

    name: str

    def allocate(self, cluster: ClusterView, jobs: Sequence[JobView]) -> Mapping[str, int]:
        """Return cores per active job id."""
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


# --------------------------------------------------------------------------- registry


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
        raise PolicyError(f"{spec!r} does not provide a name and an allocate(cluster, jobs) method")
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
