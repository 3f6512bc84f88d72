"""First-in first-out: the earliest job takes every core it can use, then the next."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from baselines.fair import by_arrival
from slaq.policy import ClusterView, Decision, JobView, PolicyTraits


@dataclass(frozen=True)
class FifoPolicy:
    """All cores to the oldest active job (up to its ``max_cores``), the rest to the next."""

    name: str = "fifo"
    traits: PolicyTraits = PolicyTraits()

    def allocate(self, cluster: ClusterView, jobs: Sequence[JobView]) -> Decision:
        """Fill jobs in arrival order."""
        left = cluster.total_cores
        out: dict[str, int] = {}
        for job in by_arrival(jobs):
            take = left if job.max_cores is None else min(left, job.max_cores)
            out[job.job_id] = take
            left -= take
        return Decision(out)
