"""Greedy core allocation over concave gains: the reference max-heap and a fast equivalent.

Both functions hand out ``budget`` extra cores given a marginal-gain oracle
``marginal(rows, a)``: the gain of giving job ``rows[i]`` its ``a``-th core on top of its floor
(``a >= 1``). A core goes to the largest positive marginal; ties go to the lower job index
(heap order). Cores nobody gains from are left for the caller to spread.

The fast version relies on each job's marginals being non-increasing in ``a`` (concave gains),
which SLAQ's predictors guarantee. It evaluates marginals in doubling chunks only for jobs
that might still be in the running, finds the budget-th largest value with ``np.partition``,
and breaks ties exactly as the heap would. Tests check both return the same allocation.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np

Marginal = Callable[[np.ndarray, np.ndarray], np.ndarray]


def greedy_heap(rooms: np.ndarray, marginal: Marginal, budget: int) -> np.ndarray:
    """Reference greedy: pop the best next core from a max-heap, one core at a time."""
    rooms = np.asarray(rooms, dtype=np.int64)
    extra = np.zeros(rooms.size, dtype=np.int64)
    heap: list[tuple[float, int]] = []
    for i in np.flatnonzero(rooms > 0):
        value = float(marginal(np.array([i]), np.array([1]))[0])
        heap.append((-value, int(i)))
    heapq.heapify(heap)
    while budget > 0 and heap:
        neg, i = heapq.heappop(heap)
        if -neg <= 0:
            break
        extra[i] += 1
        budget -= 1
        if extra[i] < rooms[i]:
            value = float(marginal(np.array([i]), np.array([extra[i] + 1]))[0])
            heapq.heappush(heap, (-value, i))
    return extra


def greedy_fast(
    rooms: np.ndarray, marginal: Marginal, budget: int, first_chunk: int = 8
) -> np.ndarray:
    """Vectorized greedy with the same result as :func:`greedy_heap` on concave gains."""
    rooms = np.asarray(rooms, dtype=np.int64)
    n = rooms.size
    extra = np.zeros(n, dtype=np.int64)
    if budget <= 0 or n == 0:
        return extra
    computed = np.zeros(n, dtype=np.int64)
    chunk = max(first_chunk, int(np.ceil(2 * budget / max(n, 1))))
    want = np.minimum(rooms, chunk)
    rows_parts: list[np.ndarray] = []
    cols_parts: list[np.ndarray] = []
    vals_parts: list[np.ndarray] = []
    last = np.full(n, -np.inf)
    while True:
        grow = np.flatnonzero(want > computed)
        if grow.size:
            counts = want[grow] - computed[grow]
            rows = np.repeat(grow, counts)
            starts = np.repeat(computed[grow], counts)
            offsets = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
            cols = starts + offsets + 1
            vals = np.asarray(marginal(rows, cols), dtype=float)
            rows_parts.append(rows)
            cols_parts.append(cols)
            vals_parts.append(vals)
            ends = np.cumsum(counts) - 1
            last[grow] = vals[ends]
            computed[grow] = want[grow]
        vals_all = np.concatenate(vals_parts)
        positive = vals_all[vals_all > 0]
        if positive.size <= budget:
            threshold = 0.0
            # Every positive marginal seen is taken; a job whose last seen one is positive may
            # have more beyond what was computed.
            pending = (last > 0) & (computed < rooms)
        else:
            threshold = float(
                np.partition(positive, positive.size - budget)[positive.size - budget]
            )
            pending = (last >= threshold) & (computed < rooms)
        if not pending.any():
            break
        want = np.where(pending, np.minimum(rooms, np.maximum(2 * computed, 1)), computed)
    rows_all = np.concatenate(rows_parts)
    cols_all = np.concatenate(cols_parts)
    if threshold <= 0:
        chosen = vals_all > 0
    else:
        chosen = vals_all > threshold
        need = budget - int(chosen.sum())
        if need > 0:
            tied = np.flatnonzero(vals_all == threshold)
            order = np.lexsort((cols_all[tied], rows_all[tied]))
            chosen[tied[order[:need]]] = True
    np.add.at(extra, rows_all[chosen], 1)
    return extra


def spread_evenly(alloc: np.ndarray, budget: int, caps: np.ndarray | None = None) -> np.ndarray:
    """Hand ``budget`` leftover cores out as evenly as possible, lowest index first on ties.

    Used when no job gains from more cores, so the cluster stays work-conserving.
    """
    alloc = np.asarray(alloc, dtype=np.int64).copy()
    n = alloc.size
    if n == 0 or budget <= 0:
        return alloc
    caps = np.full(n, np.iinfo(np.int64).max) if caps is None else np.asarray(caps, np.int64)
    while budget > 0:
        open_rows = np.flatnonzero(alloc < caps)
        if open_rows.size == 0:
            break
        share, rest = divmod(budget, open_rows.size)
        add = np.full(open_rows.size, share)
        add[:rest] += 1
        add = np.minimum(add, caps[open_rows] - alloc[open_rows])
        if add.sum() == 0:
            break
        alloc[open_rows] += add
        budget -= int(add.sum())
    return alloc
