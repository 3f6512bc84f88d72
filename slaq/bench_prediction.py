"""Loss-prediction error on curves the fitter was not written for (docs/design.md §4).

Scored: recorded curves (live run traces, the curve library) and held-out synthetic families
(noisy, plateau, power law ``A k^-alpha + c``, sum of two exponentials). The fitter's own clean
families are left out on purpose: a fit recovers them exactly, which measures nothing.

Every curve is cut after ``n`` iterations (``n`` from ``MIN_POINTS_CURVEFIT``, every
``stride``); each predictor sees only the first ``n`` losses and predicts the loss ``k`` ahead.
The error is ``|predicted - actual| / |actual|``. Predictors: the batched fitter cold
(``curvefit-batched``), the same fitter warm-started along each curve, refitted at every loss
(``curvefit-batched-warm``), the models as the decision loop keeps them, refitted on
:func:`slaq.predict.refit_due`'s schedule and re-anchored in between (``curvefit-loop``), the
per-job scipy reference (``curvefit-scipy``) and the prototype's geometric rule
(``geometric``). The first two are the fitter against the reference; the loop's adds what its
refit schedule costs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slaq.fitbatch import fit_loss_models
from slaq.jobstate import JobState
from slaq.loop import ModelBook
from slaq.predict import (
    MIN_POINTS_CURVEFIT,
    LossModel,
    RuntimeModel,
    fit_curve,
    fit_geometric,
)
from slaq.sim import synthetic_curve
from slaq.traces import TRACE_FILE, read_trace
from slaq.workload import JobSpec

log = logging.getLogger(__name__)

HELD_OUT = ("noisy", "plateau", "power", "two_exp")
PREDICTORS = (
    "curvefit-batched",
    "curvefit-batched-warm",
    "curvefit-loop",
    "curvefit-scipy",
    "geometric",
)


def held_out_curve(family: str, n: int, seed: int) -> np.ndarray:
    """One seeded curve of a family outside the fitter's two (or noisy / plateau variants)."""
    rng = np.random.default_rng(seed)
    k = np.arange(1, n + 1, dtype=float)
    if family == "power":
        amp, alpha, floor = rng.uniform(0.5, 2.0), rng.uniform(0.3, 1.5), rng.uniform(0.05, 0.5)
        return amp * k**-alpha + floor
    if family == "two_exp":
        fast, slow = rng.uniform(0.5, 0.8), rng.uniform(0.9, 0.99)
        return rng.uniform(0.5, 2.0) * fast**k + rng.uniform(0.1, 0.5) * slow**k + 0.1
    if family == "noisy":
        base = "sublinear" if rng.random() < 0.5 else "exponential"
        return synthetic_curve({"family": "noisy", "base": base}, n, seed)
    return synthetic_curve({"family": family}, n, seed)


def recorded_curves(traces: Sequence[Path], library: Path | None) -> dict[str, dict[str, Any]]:
    """Loss curves of recorded runs and of the curve library, grouped per algorithm."""
    groups: dict[str, dict[str, np.ndarray]] = {}
    for run_dir in traces:
        if not (Path(run_dir) / TRACE_FILE).is_file():
            raise ValueError(f"{run_dir}: no {TRACE_FILE} (empty or unfinished run directory)")
        trace = read_trace(Path(run_dir)).sort_values(["job_id", "iteration"])
        for (algorithm, job_id), rows in trace.groupby(["algorithm", "job_id"]):
            groups.setdefault(f"live {algorithm}", {})[f"{run_dir}:{job_id}"] = rows[
                "loss"
            ].to_numpy(float)
    if library is not None:
        if not Path(library).is_file():
            raise ValueError(f"curve library {library} does not exist")
        table = pd.read_parquet(library)
        missing = {"template_id", "iteration", "loss"} - set(table.columns)
        if missing:
            raise ValueError(f"curve library {library} lacks columns {sorted(missing)}")
        table = table.sort_values(["template_id", "iteration"])
        by = "algorithm" if "algorithm" in table.columns else None
        for key, rows in table.groupby("template_id"):
            name = f"library {rows[by].iloc[0]}" if by else "library"
            groups.setdefault(name, {})[str(key)] = rows["loss"].to_numpy(float)
    return groups


def _cuts(curves: dict[str, np.ndarray], stride: int, horizon: int) -> list[tuple[str, int]]:
    return [
        (name, n)
        for name, c in curves.items()
        for n in range(MIN_POINTS_CURVEFIT, c.size, stride)
        if n < c.size  # at least one horizon can be scored
    ]


def _warm_models(curves: dict[str, np.ndarray], cuts: list[tuple[str, int]]) -> list[LossModel]:
    """Models at every cut, fitted along each curve one loss at a time, warm-started."""
    latest: dict[str, LossModel] = {}
    at: dict[tuple[str, int], LossModel] = {}
    for n in range(MIN_POINTS_CURVEFIT, max(c.size for c in curves.values())):
        live = [name for name in curves if curves[name].size > n]
        fitted = fit_loss_models(
            [curves[name][:n] for name in live], warm=[latest.get(name) for name in live]
        )
        for name, model in zip(live, fitted, strict=True):
            latest[name] = model
            at[(name, n)] = model
    return [at[cut] for cut in cuts]


def _loop_models(curves: dict[str, np.ndarray], cuts: list[tuple[str, int]]) -> list[LossModel]:
    """Models at every cut as the live loop keeps them: one loss at a time through a
    :class:`~slaq.loop.ModelBook` that refits on :func:`slaq.predict.refit_due`'s schedule,
    warm-started, and re-anchors the last fit in between (docs/design.md §2)."""
    book = ModelBook("curvefit", refit_every=1)
    states = {name: _curve_state(name) for name in curves}
    at: dict[tuple[str, int], LossModel] = {}
    for n in range(1, max(c.size for c in curves.values())):
        live = [name for name in curves if curves[name].size > n]
        for name in live:
            states[name].history.append(float(curves[name][n - 1]))
        fitted = book.refresh([states[name] for name in live])
        if n >= MIN_POINTS_CURVEFIT:
            at.update(((name, n), model) for name, model in zip(live, fitted, strict=True))
    return [at[cut] for cut in cuts]


def _curve_state(name: str) -> JobState:
    """A job state to feed one recorded curve through the loop's model book."""
    spec = JobSpec(name, "synthetic", "synthetic", 0.0, max_iter=10**9, tol=0.0)
    return JobState(spec, RuntimeModel())


def score_group(
    curves: dict[str, np.ndarray], horizons: Sequence[int], stride: int
) -> list[dict[str, Any]]:
    """Error records (predictor, horizon, curve, error) for one group of curves."""
    cuts = _cuts(curves, stride, max(horizons))
    if not cuts:
        return []
    histories = [curves[name][:n] for name, n in cuts]
    models = {
        "curvefit-batched": fit_loss_models(histories),
        "curvefit-batched-warm": _warm_models(curves, cuts),
        "curvefit-loop": _loop_models(curves, cuts),
        "curvefit-scipy": [fit_curve(h) for h in histories],
        "geometric": [fit_geometric(h) for h in histories],
    }
    records = []
    for predictor, fitted in models.items():
        for (name, n), model in zip(cuts, fitted, strict=True):
            curve = curves[name]
            for k in horizons:
                if n + k > curve.size:
                    continue
                actual = curve[n + k - 1]
                pred = float(model.predict_ahead(float(k)))
                error = abs(pred - actual) / max(abs(actual), 1e-12)
                records.append(
                    {"predictor": predictor, "horizon": k, "curve": name, "error": error}
                )
    return records


def _table(records: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (pred, h), rows in records.groupby(["predictor", "horizon"]):
        out.setdefault(pred, {})[str(h)] = {
            "median": float(rows["error"].median()),
            "p90": float(rows["error"].quantile(0.9)),
            "curves": int(rows["curve"].nunique()),
            "points": len(rows),
        }
    return out


def prediction_benchmark(
    jobs_per_family: int = 20,
    length: int = 80,
    horizons: Sequence[int] = (1, 5, 10, 20),
    stride: int = 3,
    seed: int = 0,
    traces: Sequence[Path] = (),
    library: Path | None = None,
) -> dict[str, Any]:
    """Median and p90 relative error per group, predictor and horizon, with curve counts."""
    groups = recorded_curves(traces, library)
    for fi, family in enumerate(HELD_OUT):
        groups[f"held-out {family}"] = {
            f"{family}-{i}": held_out_curve(family, length, seed * 7919 + fi * 101 + i)
            for i in range(jobs_per_family)
        }
    out: dict[str, Any] = {
        "benchmark": "prediction",
        "error": "|predicted - actual| / |actual|",
        "horizons": list(horizons),
        "stride": stride,
        "groups": {},
    }
    pooled = []
    for group, curves in groups.items():
        records = pd.DataFrame.from_records(score_group(curves, horizons, stride))
        if records.empty:
            log.warning("%s: no curve long enough to score", group)
            continue
        records["curve"] = group + "/" + records["curve"]
        out["groups"][group] = _table(records)
        pooled.append(records)
        log.info("scored %s (%d curves)", group, len(curves))
    if pooled:
        out["all"] = _table(pd.concat(pooled, ignore_index=True))
        out["batched_within_10pct_of_scipy"] = _within(out["all"])
    return out


def _within(table: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Median error of each batched variant over scipy's, per horizon (the 10% criterion)."""
    out: dict[str, Any] = {}
    for variant in ("curvefit-batched", "curvefit-batched-warm", "curvefit-loop"):
        ratios = {
            h: table[variant][h]["median"] / max(table["curvefit-scipy"][h]["median"], 1e-300)
            for h in table["curvefit-scipy"]
        }
        out[variant] = {"median_ratio": ratios, "ok": all(r <= 1.10 for r in ratios.values())}
    return out
