"""Iterative trainers (logreg, logreg_sgd, svm, linreg, mlp, kmeans, gmm) and their registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slaq.algorithms.base import (
    BlockFn,
    ConvergenceRule,
    StopTraining,
    TrainContext,
    Trainer,
)
from slaq.algorithms.clustering import GMMTrainer, KMeansTrainer
from slaq.algorithms.linear import LinRegTrainer, LogRegSGDTrainer, LogRegTrainer, SVMTrainer
from slaq.algorithms.mlp import MLPTrainer
from slaq.algorithms.sizing import estimate_iteration_cpu_s, measure_iteration_cpu_s
from slaq.algorithms.validate import validate_job

TRAINERS: dict[str, type[Trainer]] = {
    cls.algorithm: cls
    for cls in (
        LogRegTrainer,
        LogRegSGDTrainer,
        SVMTrainer,
        LinRegTrainer,
        MLPTrainer,
        KMeansTrainer,
        GMMTrainer,
    )
}


def make_trainer(
    algorithm: str,
    n_features: int,
    n_outputs: int,
    params: Mapping[str, Any] | None,
    seed: int,
) -> Trainer:
    """Build the trainer registered under ``algorithm``; ValueError names the known ones."""
    try:
        cls = TRAINERS[algorithm]
    except KeyError:
        raise ValueError(
            f"unknown algorithm {algorithm!r}; known: {', '.join(sorted(TRAINERS))}"
        ) from None
    return cls(n_features, n_outputs, dict(params or {}), seed)


__all__ = [
    "TRAINERS",
    "BlockFn",
    "ConvergenceRule",
    "StopTraining",
    "TrainContext",
    "Trainer",
    "estimate_iteration_cpu_s",
    "make_trainer",
    "measure_iteration_cpu_s",
    "validate_job",
]
