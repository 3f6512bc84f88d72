"""The SLAQ policy: divide the cores by predicted normalized loss reduction (docs/design.md §1).

Each epoch of ``T`` seconds:

1. Jobs with fewer than two losses get the fair share ``C // n`` (the prototype's new-job rule:
   without two points there is nothing to extrapolate, and a new job's first drop is its
   largest anyway).
2. Every other job gets a floor of ``min_cores``, scaled down when the floors of all jobs would
   take more than ``floor_share`` of the cluster (then each gets
   ``floor(floor_share * C / n_old)``, possibly 0): floors that use up the cluster would make
   SLAQ collapse into fair sharing exactly where it should help most (docs/design.md §1).
3. The remaining cores go one at a time to the largest predicted gain: giving job ``j`` its
   ``a``-th core lets it run ``T / t_j(a)`` iterations, and its gain is the predicted loss
   reduction over that many iterations divided by the largest drop the job has shown
   (objective ``total``). Objective ``maxmin`` instead gives each core to the job whose
   predicted normalized loss after the epoch is worst.
4. Cores nobody is predicted to gain from are spread evenly (work conservation).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from slaq.allocate import greedy_fast, greedy_heap, spread_evenly
from slaq.policy import ClusterView, Decision, JobView, PolicyTraits
from slaq.predict import PREDICTORS, LossModelBatch

OBJECTIVES = ("total", "maxmin")
IMPLEMENTATIONS = ("fast", "heap")
# "Converged" in maxmin: predicted loss after this many more iterations stands in for L*.
_ASYMPTOTE_ITERATIONS = 1e6


@dataclass
class GainModel:
    """Predicted normalized gain ``g_j(a)`` of running job ``j`` on ``a`` cores for one epoch."""

    losses: LossModelBatch
    work: np.ndarray
    overhead: np.ndarray
    scale: np.ndarray
    epoch_s: float

    @classmethod
    def from_jobs(cls, jobs: Sequence[JobView], epoch_s: float) -> GainModel:
        """Collect each job's fitted loss and runtime models into arrays."""
        losses = LossModelBatch([j.model() for j in jobs])
        work = np.array([j.runtime.work_s for j in jobs], dtype=float)
        overhead = np.array([j.runtime.overhead_s for j in jobs], dtype=float)
        scale = np.array(
            [j.max_drop if j.max_drop > 0 else max(abs(j.last_loss), 1e-12) for j in jobs],
            dtype=float,
        )
        return cls(losses, work, overhead, scale, epoch_s)

    def iterations(self, rows: np.ndarray, cores: np.ndarray) -> np.ndarray:
        """Iterations job ``rows`` completes in one epoch with ``cores`` tasks."""
        cores = np.asarray(cores, float)
        with np.errstate(divide="ignore"):
            t = self.work[rows] / np.maximum(cores, 1e-300) + self.overhead[rows]
        return np.where(cores > 0, self.epoch_s / t, 0.0)

    def predicted_loss(self, rows: np.ndarray, cores: np.ndarray) -> np.ndarray:
        """Predicted loss after one epoch on ``cores`` tasks."""
        return self.losses.predict_ahead(self.iterations(rows, cores), rows=rows)

    def gain(self, rows: np.ndarray, cores: np.ndarray) -> np.ndarray:
        """Predicted normalized loss reduction over one epoch."""
        return (self.losses.loss_now[rows] - self.predicted_loss(rows, cores)) / self.scale[rows]


def _add_guarantees(
    base: np.ndarray, extra: np.ndarray | None, caps: np.ndarray, total: int
) -> np.ndarray:
    """Raise floors to ``extra`` (capped) out of the cores ``base`` leaves, earlier jobs first."""
    if extra is None:
        return base
    add = np.maximum(np.minimum(np.asarray(extra, np.int64), caps) - base, 0)
    room = max(total - int(base.sum()), 0)
    before = np.concatenate([[0], np.cumsum(add)[:-1]])
    return base + np.minimum(add, np.maximum(room - before, 0))


def _fair_shares(n: int, total: int) -> np.ndarray:
    share, rest = divmod(total, n)
    out = np.full(n, share, dtype=np.int64)
    out[:rest] += 1
    return out


@dataclass(frozen=True)
class SlaqPolicy:
    """SLAQ: quality-driven allocation (greedy on predicted normalized loss reduction)."""

    objective: str = "total"
    min_cores: int = 3
    floor_share: float = 0.5
    predictor: str = "curvefit"
    epoch_s: float | None = None
    new_job_rule: bool = True
    implementation: str = "fast"
    name: str = "slaq"

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, not {self.objective!r}")
        if self.predictor not in PREDICTORS:
            raise ValueError(f"predictor must be one of {PREDICTORS}, not {self.predictor!r}")
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}")
        if self.min_cores < 0:
            raise ValueError("min_cores must be >= 0")
        if not 0.0 <= self.floor_share <= 1.0:
            raise ValueError(f"floor_share must be in [0, 1], got {self.floor_share}")

    @property
    def traits(self) -> PolicyTraits:
        """Floor and predictor, declared for the decision loop."""
        return PolicyTraits(min_cores=self.min_cores, predictor=self.predictor)

    def allocate(self, cluster: ClusterView, jobs: Sequence[JobView]) -> Decision:
        """Cores per job for the next epoch, with each favoured job's predicted gain."""
        return self.allocate_with_floors(cluster, jobs, None)

    def allocate_with_floors(
        self, cluster: ClusterView, jobs: Sequence[JobView], extra_floors: np.ndarray | None
    ) -> Decision:
        """SLAQ's allocation with optional per-job guaranteed cores on top of its own floors.

        Guarantees come out of what SLAQ's floors leave, earlier jobs first when short (the
        order SLAQ itself uses); the rest of the cores still go out greedily by marginal gain.
        """
        n = len(jobs)
        if n == 0:
            return Decision(MappingProxyType({}))
        total = int(cluster.total_cores)
        caps = np.array(
            [j.max_cores if j.max_cores is not None else total for j in jobs], dtype=np.int64
        )
        young = np.array([self.new_job_rule and j.iterations < 2 for j in jobs], dtype=bool)
        alloc = _add_guarantees(self._floors(young, caps, total), extra_floors, caps, total)
        budget = total - int(alloc.sum())
        old = np.flatnonzero(~young)
        gains: dict[str, float] = {}
        if budget > 0 and old.size:
            epoch = self.epoch_s or cluster.epoch_s
            model = GainModel.from_jobs([jobs[i] for i in old], epoch)
            rooms = caps[old] - alloc[old]
            if self.objective == "total":
                extra = self._total(model, alloc[old], rooms, budget)
            else:
                extra = self._maxmin(model, alloc[old], rooms, budget)
            alloc[old] += extra
            budget -= int(extra.sum())
            predicted = model.gain(np.arange(old.size), alloc[old])
            gains = {jobs[i].job_id: float(g) for i, g in zip(old, predicted, strict=True)}
        alloc = spread_evenly(alloc, budget, caps)
        cores = {j.job_id: int(a) for j, a in zip(jobs, alloc, strict=True)}
        return Decision(MappingProxyType(cores), MappingProxyType(gains))

    def floor_per_job(self, n_old: int, total: int) -> int:
        """``min_cores``, scaled down so the floors take at most ``floor_share`` of the cores."""
        if n_old <= 0:
            return self.min_cores
        return min(self.min_cores, int(self.floor_share * total // n_old))

    def _floors(self, young: np.ndarray, caps: np.ndarray, total: int) -> np.ndarray:
        """Fair share for young jobs, the (scaled) floor for the rest, in arrival order if short."""
        n = young.size
        fair = _fair_shares(n, total)
        floor = self.floor_per_job(int(np.count_nonzero(~young)), total)
        want = np.where(young, fair, np.minimum(floor, fair))
        want = np.minimum(want, caps)
        # Never over-commit: earlier (lower index) jobs keep their floor when cores are short.
        return np.minimum(want, np.maximum(total - np.concatenate([[0], np.cumsum(want)[:-1]]), 0))

    def _total(
        self, model: GainModel, base: np.ndarray, rooms: np.ndarray, budget: int
    ) -> np.ndarray:
        def marginal(rows: np.ndarray, a: np.ndarray) -> np.ndarray:
            cores = base[rows] + a
            return model.gain(rows, cores) - model.gain(rows, cores - 1)

        greedy = greedy_fast if self.implementation == "fast" else greedy_heap
        return greedy(rooms, marginal, budget)

    def _maxmin(
        self, model: GainModel, base: np.ndarray, rooms: np.ndarray, budget: int
    ) -> np.ndarray:
        """Give each core to the job whose predicted normalized loss after the epoch is worst."""
        n = base.size
        rows = np.arange(n)
        first = model.losses.predict_ahead(np.zeros(n))
        floor = model.losses.predict_ahead(np.full(n, _ASYMPTOTE_ITERATIONS))
        span = np.maximum(first - floor, 1e-12)
        extra = np.zeros(n, dtype=np.int64)

        def remaining(i: int, cores: int) -> float:
            pred = model.predicted_loss(np.array([i]), np.array([cores]))[0]
            return float((pred - floor[i]) / span[i])

        heap = [(-remaining(i, base[i]), int(i)) for i in rows if rooms[i] > 0]
        heapq.heapify(heap)
        while budget > 0 and heap:
            neg, i = heapq.heappop(heap)
            after = remaining(i, base[i] + extra[i] + 1)
            if not after < -neg or not math.isfinite(after):
                continue  # another core does not help this job; drop it
            extra[i] += 1
            budget -= 1
            if extra[i] < rooms[i]:
                heapq.heappush(heap, (-after, i))
        return extra
