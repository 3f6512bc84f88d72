"""Loss histories and SLAQ's normalization (docs/design.md §1)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


class NonFiniteLoss(ValueError):
    """A job reported a NaN or infinite loss; the job is marked failed."""


class LossHistory:
    """Append-only record of a job's losses (owned by the job's state, never by a policy)."""

    __slots__ = ("_losses", "_n", "_max_drop")

    def __init__(self, losses: Iterable[float] = ()) -> None:
        self._losses = np.empty(16, dtype=float)
        self._n = 0
        self._max_drop = 0.0
        for value in losses:
            self.append(value)

    def __len__(self) -> int:
        return self._n

    def append(self, loss: float) -> None:
        """Record the loss after one more iteration; reject NaN and infinity."""
        loss = float(loss)
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"loss {loss!r} after iteration {self._n + 1} is not finite")
        if self._n == self._losses.size:
            self._losses = np.resize(self._losses, 2 * self._n)
        if self._n:
            self._max_drop = max(self._max_drop, self._losses[self._n - 1] - loss)
        self._losses[self._n] = loss
        self._n += 1

    @property
    def losses(self) -> np.ndarray:
        """Read-only view of the recorded losses."""
        view = self._losses[: self._n]
        view.flags.writeable = False
        return view

    @property
    def last(self) -> float:
        """Most recent loss (NaN when empty)."""
        return float(self._losses[self._n - 1]) if self._n else math.nan

    @property
    def max_drop(self) -> float:
        """Largest single-iteration loss decrease seen so far (0 if none)."""
        return self._max_drop

    def normalized_changes(self) -> np.ndarray:
        """Each iteration's loss decrease divided by the largest decrease up to that point."""
        return normalized_changes(self.losses)

    def last_normalized_change(self) -> float:
        """``normalized_changes()[-1]`` in O(1): the trace records it after every iteration."""
        if self._n < 2 or self._max_drop <= 0:
            return 0.0
        return float((self._losses[self._n - 2] - self._losses[self._n - 1]) / self._max_drop)


def normalized_changes(losses: np.ndarray) -> np.ndarray:
    """Loss decrease at each iteration over the running maximum decrease (0 where none yet).

    The first entry (no previous loss) is 0. A job's first drop is its largest so far, so a new
    job scores 1, which is what lets SLAQ favour young jobs.
    """
    losses = np.asarray(losses, dtype=float)
    if losses.size < 2:
        return np.zeros(losses.size)
    drops = np.concatenate([[0.0], losses[:-1] - losses[1:]])
    running = np.maximum.accumulate(np.maximum(drops, 0.0))
    out = np.zeros_like(drops)
    np.divide(drops, running, out=out, where=running > 0)
    return out


def normalized_gain(loss_now: float, loss_later: np.ndarray, max_drop: float) -> np.ndarray:
    """Predicted loss reduction in units of the job's largest observed single-iteration drop."""
    scale = max_drop if max_drop > 0 else max(abs(loss_now), 1e-12)
    return (loss_now - np.asarray(loss_later, dtype=float)) / scale


def quality(losses: np.ndarray, initial: float, best: float) -> np.ndarray:
    """Normalized loss ``q = (L - L*) / (L0 - L*)``: 1 at the start, 0 at the best loss."""
    span = initial - best
    losses = np.asarray(losses, dtype=float)
    if not span > 0:
        return np.zeros_like(losses)
    return np.clip((losses - best) / span, 0.0, None)
