"""What one SLAQ epoch costs: refit the loss models that changed, snapshot, allocate.

Every job reports one new loss per epoch, so every model is refitted, in one batch
(:func:`slaq.fitbatch.fit_loss_models`, warm-started from the previous epoch), then
:class:`slaq.scheduler.SlaqPolicy` allocates with its default floor (docs/design.md §4,
scheduling overhead). The per-job scipy fit (:func:`slaq.predict.fit_loss_model`) is timed in
the same run as the reference, on a subset of the jobs, and scaled to all of them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from slaq.fitbatch import fit_loss_models
from slaq.policy import ClusterView, JobView, RuntimeFit, frozen_array
from slaq.predict import LossModel, fit_curve, fit_loss_model, refit_due
from slaq.scheduler import SlaqPolicy
from slaq.sim import synthetic_curve

log = logging.getLogger(__name__)

FAMILIES = ("sublinear", "exponential", "noisy", "plateau")
EPOCH_S = 3.0


def check_sizes(**sizes: Sequence[int] | int) -> None:
    """Reject empty, zero or negative benchmark sizes with a one-line ``ValueError``."""
    for name, value in sizes.items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"{flag} must be a positive integer, got {value}")
        elif not value or any(v < 1 for v in value):
            raise ValueError(f"{flag} must be positive integers, got {list(value)}")


def _curves(n: int, length: int, seed: int) -> list[np.ndarray]:
    """Loss curves of every synthetic family (noise and plateaus included), seeded per job."""
    return [
        synthetic_curve({"family": FAMILIES[i % len(FAMILIES)]}, length, seed * 1_000_003 + i)
        for i in range(n)
    ]


def views(
    histories: list[np.ndarray],
    models: list[LossModel],
    runtimes: list[RuntimeFit],
    max_drops: list[float],
) -> list[JobView]:
    """Synthetic jobs' snapshots from their histories, models, runtimes and largest drops."""
    return [
        JobView(
            job_id=f"j{i}",
            arrival_s=0.0,
            algorithm="synthetic",
            losses=h,
            runtime=runtimes[i],
            loss_model=models[i],
            max_drop=max_drops[i],
        )
        for i, h in enumerate(histories)
    ]


def _refit(
    histories: list[np.ndarray], models: list[LossModel], predictor: str, refit: str
) -> list[LossModel]:
    """Refit every job (``all``), or as the decision loop does (``scheduled``): fits that
    :func:`slaq.predict.refit_due` calls due in one batch, the others re-anchored."""
    if refit == "all" or predictor != "curvefit":
        return fit_loss_models(histories, predictor, warm=models)
    due = [
        i for i, (h, m) in enumerate(zip(histories, models, strict=True)) if refit_due(h.size, m)
    ]
    out = [m.rebase(h.size, h[-1]) for h, m in zip(histories, models, strict=True)]
    for i, model in zip(
        due,
        fit_loss_models([histories[i] for i in due], warm=[models[i] for i in due]),
        strict=True,
    ):
        out[i] = model
    return out


def _stats(times: Sequence[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}


def _reference_fit_ms(
    curves: list[np.ndarray], start: int, predictor: str, repeat: int
) -> dict[str, float]:
    """Per-job scipy fits over ``repeat`` consecutive epochs, in ms per job.

    ``full`` refits every job (what the batch does); ``scheduled`` is ``fit_loss_model`` with
    the previous model, which refits on :func:`slaq.predict.refit_due`'s schedule and only
    re-anchors in between (what the decision loop does with the per-job fitter).
    """
    full, scheduled = [], []
    previous = [fit_loss_model(c[:start], predictor) for c in curves]
    for r in range(1, repeat + 1):
        t0 = time.perf_counter()
        for c in curves:
            if predictor == "curvefit":
                fit_curve(c[: start + r])
            else:
                fit_loss_model(c[: start + r], predictor)
        full.append((time.perf_counter() - t0) * 1e3 / len(curves))
        t0 = time.perf_counter()
        previous = [
            fit_loss_model(c[: start + r], predictor, p)
            for c, p in zip(curves, previous, strict=True)
        ]
        scheduled.append((time.perf_counter() - t0) * 1e3 / len(curves))
    return {
        "full_ms_per_job": float(np.median(full)),
        "scheduled_ms_per_job": float(np.mean(scheduled)),
    }


def epoch_cell(
    curves: np.ndarray,
    runtimes: list[RuntimeFit],
    models: list[LossModel],
    start: int,
    cores: int,
    predictor: str,
    repeat: int,
    refit: str = "all",
) -> tuple[dict[str, Any], list[LossModel], int]:
    """Time ``repeat`` epochs at ``cores``: the row, the latest models, the history length.

    The snapshot part includes the read-only copy of each job's losses (the loop copies a
    history once per new loss); ``epoch_cpu_ms`` is the process CPU time of the whole epoch,
    which other load on the machine inflates much less than wall time.
    """
    policy = SlaqPolicy(predictor=predictor)
    cluster = ClusterView(total_cores=cores, epoch_s=EPOCH_S, now_s=0.0)
    names = ("fit", "snapshot", "allocate", "epoch", "epoch_cpu")
    parts: dict[str, list[float]] = {name: [] for name in names}
    drops = np.maximum.accumulate(np.maximum(curves[:, :-1] - curves[:, 1:], 0.0), axis=1)
    length = start
    for _ in range(repeat):
        length += 1  # every job reports one new loss
        max_drops = drops[:, length - 2].tolist()
        cpu0, t0 = time.process_time(), time.perf_counter()
        histories = [frozen_array(c[:length]) for c in curves]
        t1 = time.perf_counter()
        models = _refit(histories, models, predictor, refit)
        t2 = time.perf_counter()
        snapshot = views(histories, models, runtimes, max_drops)
        t3 = time.perf_counter()
        policy.allocate(cluster, snapshot)
        t4, cpu4 = time.perf_counter(), time.process_time()
        for name, sec in zip(
            names, (t2 - t1, (t1 - t0) + (t3 - t2), t4 - t3, t4 - t0, cpu4 - cpu0), strict=True
        ):
            parts[name].append(sec * 1e3)
    row = {f"{name}_ms": _stats(times) for name, times in parts.items()}
    return row, models, length


def _with_reference(row: dict[str, Any], reference_fit_ms: float, cold_ms: float) -> dict[str, Any]:
    """The row with the reference epoch: its fit plus this run's snapshot and allocation."""
    ref_epoch = reference_fit_ms + row["snapshot_ms"]["p50"] + row["allocate_ms"]["p50"]
    row.update(
        cold_fit_ms=cold_ms,
        reference_fit_ms=reference_fit_ms,
        reference_epoch_ms=ref_epoch,
        speedup_p50=ref_epoch / row["epoch_ms"]["p50"],
    )
    log.info(
        "%s (%s refits) jobs=%d cores=%d epoch p50=%.1f ms (fit %.1f, allocate %.1f, "
        "cpu %.1f); per-job scipy reference %.0f ms",
        row["predictor"], row["refit"], row["jobs"], row["cores"], row["epoch_ms"]["p50"],
        row["fit_ms"]["p50"], row["allocate_ms"]["p50"], row["epoch_cpu_ms"]["p50"], ref_epoch,
    )  # fmt: skip
    return row


def epoch_benchmark(
    jobs: Sequence[int],
    cores: Sequence[int],
    repeat: int = 5,
    predictors: Sequence[str] = ("curvefit", "geometric"),
    seed: int = 0,
    history: int = 20,
    reference_jobs: int = 100,
    reference_repeat: int = 3,
) -> dict[str, Any]:
    """Whole-epoch time (fit + snapshot + allocate) per predictor, jobs and cores."""
    check_sizes(jobs=jobs, cores=cores, repeat=repeat, reference_jobs=reference_jobs)
    check_sizes(reference_repeat=reference_repeat, history=history)
    rng = np.random.default_rng(seed)
    results = []
    for n in jobs:
        length = history + reference_repeat + 2 * repeat * len(cores) + 1
        curves = np.array(_curves(n, length, seed))
        runtimes = [RuntimeFit(float(w), 0.05) for w in rng.uniform(0.5, 4.0, n)]
        for predictor in predictors:
            t0 = time.perf_counter()
            models = fit_loss_models([frozen_array(c[:history]) for c in curves], predictor)
            cold_ms = (time.perf_counter() - t0) * 1e3
            ref = _reference_fit_ms(
                list(curves[:reference_jobs]), history, predictor, reference_repeat
            )
            start = history
            refits = ("all", "scheduled") if predictor == "curvefit" else ("all",)
            for c in cores:
                for refit in refits:
                    row, models, start = epoch_cell(
                        curves, runtimes, models, start, c, predictor, repeat, refit
                    )
                    per_job = ref["full_ms_per_job" if refit == "all" else "scheduled_ms_per_job"]
                    row.update(predictor=predictor, refit=refit, jobs=n, cores=c)
                    results.append(_with_reference(row, per_job * n, cold_ms))
    return {
        "benchmark": "epoch",
        "epoch_s": EPOCH_S,
        "repeat": repeat,
        "history": history,
        "floor": "SlaqPolicy defaults (min_cores 3, floor_share 0.5)",
        "curves": f"synthetic families {', '.join(FAMILIES)}, one per job in turn",
        "refit": "all: every job refitted each epoch (batched, warm); scheduled: as the "
        "decision loop, fits due by slaq.predict.refit_due batched, the rest re-anchored",
        "reference": {
            "what": "per-job scipy fit timed on the first jobs and scaled linearly to all jobs "
            "(all: slaq.predict.fit_curve for every job; scheduled: fit_loss_model with the "
            "previous model); its epoch adds this run's snapshot and allocation p50",
            "jobs_measured": reference_jobs,
            "epochs_measured": reference_repeat,
        },
        "machine": {"cpu_count": os.cpu_count(), "loadavg_at_end": list(os.getloadavg())},
        "results": results,
    }
