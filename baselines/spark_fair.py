"""Spark's own FAIR scheduler as a baseline.

Live, the engine submits every partition of every job each iteration into equal-weight FAIR
pools and lets Spark share the task slots (``native_fair``); the allocation below is only what
the simulator and the allocation log use, and equals fair sharing.
"""

from __future__ import annotations

from dataclasses import dataclass

from baselines.fair import FairPolicy
from slaq.policy import PolicyTraits


@dataclass(frozen=True)
class SparkFairPolicy(FairPolicy):
    """Spark-native FAIR pools (engine-level); equal shares in simulation."""

    name: str = "spark-fair"
    # The live engine runs every iteration over all blocks and lets Spark's FAIR pools share.
    traits: PolicyTraits = PolicyTraits(native_fair=True)
