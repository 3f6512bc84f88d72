"""Fair sharing: every active job gets the same number of cores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slaq.allocate import spread_evenly
from slaq.policy import ClusterView, Decision, JobView, PolicyTraits


def by_arrival(jobs: Sequence[JobView]) -> list[JobView]:
    """Jobs ordered by arrival time, then id (the order remainders are handed out in)."""
    return sorted(jobs, key=lambda j: (j.arrival_s, j.job_id))


@dataclass(frozen=True)
class FairPolicy:
    """Equal integer shares among active jobs; the remainder goes to the earliest arrivals."""

    name: str = "fair"
    # Fair sharing reads no loss model and has no floor.
    traits: PolicyTraits = PolicyTraits()

    def allocate(self, cluster: ClusterView, jobs: Sequence[JobView]) -> Decision:
        """Split ``cluster.total_cores`` equally, respecting each job's ``max_cores``."""
        ordered = by_arrival(jobs)
        caps = np.array(
            [j.max_cores if j.max_cores is not None else cluster.total_cores for j in ordered],
            dtype=np.int64,
        )
        alloc = spread_evenly(np.zeros(len(ordered), dtype=np.int64), cluster.total_cores, caps)
        return Decision({j.job_id: int(a) for j, a in zip(ordered, alloc, strict=True)})
