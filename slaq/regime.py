"""Regime figures of a run: does it sit where allocation matters (docs/design.md §2)?

SLAQ's effect needs contention and long jobs. Every simulated result states its regime with
three numbers taken from a run's trace (the fair run's, for the regime statement):

* ``median_epochs``: median over jobs of (end of last iteration - arrival) / epoch length;
* ``mean_active_jobs``: time average of the number of active jobs, from the first arrival to
  the last end (the summed lifetimes divided by that span);
* ``offered_load``: one-core CPU seconds of all jobs' work / (cores x arrival span), where the
  arrival span runs from the first to the last arrival. Above 1 the cluster is over-subscribed.

The paper's regime (issue 15): under fair, median job >= 50 epochs and >= 10 jobs active.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

PAPER_MIN_EPOCHS = 50.0
PAPER_MIN_ACTIVE = 10.0


def offered_load(work_cpu_s: float, cores: int, arrival_span_s: float) -> float:
    """One-core CPU seconds of work per core-second of the arrival span (NaN for one instant)."""
    if cores <= 0:
        raise ValueError("cores must be positive")
    return float(work_cpu_s) / (cores * arrival_span_s) if arrival_span_s > 0 else math.nan


def regime_figures(
    trace: pd.DataFrame,
    *,
    epoch_s: float,
    cores: int,
    work_cpu_s: float | None = None,
) -> dict[str, Any]:
    """Median epochs a job lives, mean active jobs and offered load of one run's trace.

    ``work_cpu_s`` is the total one-core CPU seconds of the jobs' work; by default the trace's
    ``cpu_s`` column (task CPU time of a live run). Simulated traces record the fixed cost in
    ``cpu_s`` too, so a simulation passes the work it was given.
    """
    if epoch_s <= 0:
        raise ValueError("epoch_s must be positive")
    if trace.empty:
        return {"jobs": 0, "median_epochs": math.nan, "mean_active_jobs": math.nan}
    jobs = trace.groupby("job_id").agg(
        arrival=("arrival_s", "first"), end=("t_end_s", "max"), iterations=("iteration", "max")
    )
    life = jobs["end"] - jobs["arrival"]
    span = float(jobs["end"].max() - jobs["arrival"].min())
    arrival_span = float(jobs["arrival"].max() - jobs["arrival"].min())
    work = float(trace["cpu_s"].sum()) if work_cpu_s is None else float(work_cpu_s)
    median_epochs = float(life.median() / epoch_s)
    mean_active = float(life.sum() / span) if span > 0 else math.nan
    return {
        "jobs": int(len(jobs)),
        "median_epochs": median_epochs,
        "median_life_s": float(life.median()),
        "median_iterations": float(jobs["iterations"].median()),
        "mean_active_jobs": mean_active,
        "offered_load": offered_load(work, cores, arrival_span),
        "work_cpu_s": work,
        "arrival_span_s": arrival_span,
        "makespan_s": span,
        "epoch_s": float(epoch_s),
        "cores": int(cores),
        "paper_regime": bool(median_epochs >= PAPER_MIN_EPOCHS and mean_active >= PAPER_MIN_ACTIVE),
    }
