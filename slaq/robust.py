"""Robust SLAQ: SLAQ's greedy allocation, hardened against loss curves it mispredicts.

SLAQ gives each core to the job with the largest predicted normalized loss reduction. When
the prediction is wrong the job is starved: a noisy curve (mini-batch SGD) makes the
prototype's ratio of the last two losses >= 1 about half the time, so its predicted gain is 0;
a curve that is flat before it drops (a plateau) looks converged. :class:`RobustSlaqPolicy`
wraps :class:`~slaq.scheduler.SlaqPolicy` and changes only what SLAQ is given, never how it
decides, through independent mechanisms (each a constructor flag, for the ablation):

* ``denoise``: jobs whose recent losses go up as well as down get a trend predictor instead of
  the last-two-points rule: a least-squares fit of log-loss over a window (its rate, its level
  and the standard error of the rate), and a loss scale taken from a moving average, so the
  normalization is not inflated by noise either.
* ``anti_starvation``: a job held at the floor for ``starve_after_s`` gets the fair share for
  an epoch, so no job's delay is unbounded whatever its prediction says.
* ``explore``: a share of the cores is reserved for jobs whose predictions are unreliable
  (their losses go up as often as down), in proportion to that unreliability.
* ``plateau``: a job that has not yet dropped by ``plateau_tol`` of its first loss has not
  started converging; it is treated like a new job (fair share) instead of a converged one.

The policy is built by composition on SLAQ's public pieces: a denoised job is the same frozen
:class:`~slaq.policy.JobView` with another loss model and scale (``dataclasses.replace``), and
the extra guarantees are per-job floors passed to :meth:`SlaqPolicy.allocate_with_floors`; the
remaining cores still go out greedily by marginal gain on top of them. With every mechanism
off the policy returns exactly what ``SlaqPolicy`` with the same parameters returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from slaq.policy import ClusterView, Decision, JobView, PolicyTraits
from slaq.predict import LossModel, fit_geometric
from slaq.scheduler import SlaqPolicy

MECHANISMS = ("denoise", "anti_starvation", "explore", "plateau")


# --------------------------------------------------------------------------- noise-aware model


@dataclass(frozen=True)
class Trend:
    """Local log-linear trend of a loss history: what SLAQ should believe about a noisy job."""

    model: LossModel
    scale: float
    rate: float
    rate_se: float
    unreliability: float

    @property
    def relative_uncertainty(self) -> float:
        """Standard error of the rate relative to the rate (capped at 1)."""
        return min(1.0, self.rate_se / max(self.rate, 1e-12))


def unreliability(losses: np.ndarray, window: int) -> float:
    """Share of recent iterations whose loss went up, doubled: 0 smooth, about 1 pure noise.

    A smooth curve never goes up, so one increase already means the last-two-points ratio can
    flip sign; when noise swamps the trend, about half the steps go up.
    """
    recent = np.asarray(losses, float)[-(window + 1) :]
    if recent.size < 3:
        return 0.0
    ups = np.count_nonzero(np.diff(recent) > 0)
    return min(1.0, 2.0 * ups / (recent.size - 1))


def _positive(losses: np.ndarray) -> np.ndarray:
    """Losses shifted to be positive when needed (a ratio of non-positive losses is meaningless)."""
    low = float(losses.min())
    if low > 0:
        return losses
    span = max(float(losses.max()) - low, 1e-12)
    return losses - low + span


def fit_trend(losses: np.ndarray, window: int = 16, smooth: int = 5, bonus: float = 0.0) -> Trend:
    """Fit the log-linear trend of the last ``window`` losses (noise-aware geometric rule).

    The rate is the least-squares slope of log-loss (clipped at 0: a rising fit predicts no
    gain, like the prototype's rule), anchored at the fitted level rather than the last noisy
    loss. The scale that normalizes gains is the largest drop of a ``smooth``-point moving
    average, because raw single-step drops of a noisy curve are mostly noise.
    """
    raw = np.asarray(losses, float)
    n = raw.size
    if n < 3:
        model = fit_geometric(raw)
        drop = max(float(raw[0] - raw[-1]), 0.0) if n else 0.0
        return Trend(model, drop, 0.0, 0.0, 0.0)
    y = _positive(raw)
    tail = y[-window:]
    k = np.arange(n - tail.size + 1, n + 1, dtype=float)
    z = np.log(tail)
    kc = k - k.mean()
    sxx = float(kc @ kc)
    slope = float(kc @ (z - z.mean())) / sxx
    resid = z - (z.mean() + slope * kc)
    dof = max(tail.size - 2, 1)
    slope_se = math.sqrt(float(resid @ resid) / dof / sxx)
    level_pos = math.exp(z.mean() + slope * (k[-1] - k.mean()))
    rate = max(-slope + bonus * slope_se, 0.0)
    # Back in the loss's own units (undo the positivity shift): only differences matter.
    shift = float(y[-1] - raw[-1])
    level = level_pos - shift
    if rate > 0:
        model = LossModel("exponential", (level_pos * math.exp(rate * n), rate, -shift), n, level)
    else:
        model = LossModel("constant", (), float(n), level)
    m = max(1, min(smooth, n // 2))
    csum = np.concatenate([[0.0], np.cumsum(raw)])
    moving = (csum[m:] - csum[:-m]) / m
    drops = moving[:-1] - moving[1:]
    scale = max(float(drops.max()) if drops.size else 0.0, level_pos * (1 - math.exp(-rate)))
    return Trend(model, scale, rate, slope_se, unreliability(raw, window))


# --------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class RobustSlaqPolicy:
    """SLAQ plus noise-aware prediction, anti-starvation, exploration and plateau detection."""

    objective: str = "total"
    min_cores: int = 1
    floor_share: float = 0.5
    predictor: str = "geometric"
    epoch_s: float | None = None
    new_job_rule: bool = True
    implementation: str = "fast"
    denoise: bool = True
    # Off by default: in the robustness benchmark they cost gains (see the module docstring).
    anti_starvation: bool = False
    explore: bool = False
    plateau: bool = False
    noise_window: int = 16
    uncertainty_bonus: float = 0.0
    starve_after_s: float = 30.0
    explore_share: float = 0.1
    plateau_tol: float = 0.01
    plateau_min_iters: int = 3
    name: str = "slaq-robust"
    _slaq: SlaqPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.noise_window < 3:
            raise ValueError("noise_window must be >= 3")
        if not 0.0 <= self.explore_share < 1.0:
            raise ValueError("explore_share must be in [0, 1)")
        slaq = SlaqPolicy(
            objective=self.objective,
            min_cores=self.min_cores,
            floor_share=self.floor_share,
            predictor=self.predictor,
            epoch_s=self.epoch_s,
            new_job_rule=self.new_job_rule,
            implementation=self.implementation,
            name=self.name,
        )
        object.__setattr__(self, "_slaq", slaq)

    @property
    def traits(self) -> PolicyTraits:
        """The inner SLAQ's floor and predictor."""
        return self._slaq.traits

    @classmethod
    def plain(cls, **params: Any) -> RobustSlaqPolicy:
        """The variant with every mechanism off (equals ``SlaqPolicy(**params)``)."""
        return cls(**params, **{m: False for m in MECHANISMS})

    def allocate(self, cluster: ClusterView, jobs: Sequence[JobView]) -> Decision:
        """Cores per job for the next epoch."""
        views = [self._denoised(j) for j in jobs] if self.denoise else list(jobs)
        floors = self._guarantees(cluster, views)
        return self._slaq.allocate_with_floors(cluster, views, floors)

    # ----------------------------------------------------------------------- mechanisms

    def _denoised(self, job: JobView) -> JobView:
        """The job as SLAQ should see it: a trend model in place of a noisy curve's ratio."""
        losses = job.losses
        if job.iterations < 4 or unreliability(losses, self.noise_window) == 0:
            return job
        trend = fit_trend(losses, self.noise_window, bonus=self.uncertainty_bonus)
        return replace(job, loss_model=trend.model, max_drop=trend.scale)

    def _guarantees(self, cluster: ClusterView, jobs: Sequence[JobView]) -> np.ndarray | None:
        """Per-job minimum cores from the enabled mechanisms (None when none is enabled)."""
        if not (self.anti_starvation or self.explore or self.plateau):
            return None
        n = len(jobs)
        total = int(cluster.total_cores)
        out = np.zeros(n, dtype=np.int64)
        if n == 0:
            return out
        fair = np.full(n, total // n, dtype=np.int64)
        if self.anti_starvation:
            starved = np.array([j.starved_s >= self.starve_after_s for j in jobs])
            out = np.where(starved, np.maximum(out, fair), out)
        if self.plateau:
            flat = np.array([self._on_plateau(j) for j in jobs])
            out = np.where(flat, np.maximum(out, fair), out)
        if self.explore and self.explore_share > 0:
            out = np.maximum(out, self._exploration(jobs, total, fair))
        return out

    def _on_plateau(self, job: JobView) -> bool:
        """Whether the job has run a few iterations without starting to converge."""
        if job.iterations < max(self.plateau_min_iters, 2):
            return False
        losses = job.losses
        first = float(losses[0])
        return float(first - losses.min()) < self.plateau_tol * max(abs(first), 1e-12)

    def _exploration(self, jobs: Sequence[JobView], total: int, fair: np.ndarray) -> np.ndarray:
        """Reserved cores split over unreliable jobs in proportion to unreliability."""
        weights = np.array(
            [unreliability(j.losses, self.noise_window) if j.iterations >= 2 else 0.0 for j in jobs]
        )
        out = np.zeros(len(jobs), dtype=np.int64)
        if not weights.sum() > 0:
            return out
        reserve = self.explore_share * total
        share = np.floor(reserve * weights / weights.sum()).astype(np.int64)
        return np.minimum(share, fair)
