"""Fair sharing: every active job gets the same number of cores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from slaq.allocate import spread_evenly
from slaq.policy import ClusterView, JobView


def by_arrival(jobs: Sequence[JobView]) -> list[JobView]:
    """Jobs ordered by arrival time, then id (the order remainders are handed out in)."""
    return sorted(jobs, key=lambda j: (j.arrival_s, j.job_id))


@dataclass
class FairPolicy:
    """Equal integer shares among active jobs; the remainder goes to the earliest arrivals."""

    name: str = "fair"

    def allocate(self, cluster: ClusterView, jobs: Sequence[JobView]) -> Mapping[str, int]:
        """Split ``cluster.total_cores`` equally, respecting each job's ``max_cores``."""
        ordered = by_arrival(jobs)
        caps = np.array(
            [j.max_cores if j.max_cores is not None else cluster.total_cores for j in ordered],
            dtype=np.int64,
        )
        alloc = spread_evenly(np.zeros(len(ordered), dtype=np.int64), cluster.total_cores, caps)
        return {j.job_id: int(a) for j, a in zip(ordered, alloc, strict=True)}
