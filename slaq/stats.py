"""Statistics over seeds (docs/design.md §4): mean, 95% confidence interval, paired test.

Every experiment runs several seeds; a number is reported as its mean over seeds with a
Student-t confidence interval, and as "within noise" when that interval contains zero. With a
single seed there is no interval: it is reported as NaN and the result counts as within noise,
because one seed cannot tell an effect from noise (issue 15 measured +1.5 / -21.7 / +21.1% on
three seeds of the same pipeline).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95


def within_noise(low: float, high: float) -> bool:
    """True when the interval ``[low, high]`` contains zero or is undefined (NaN)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return True
    return low <= 0.0 <= high


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean, Student-t confidence interval, min, max and seed count of ``values``.

    NaN values (a metric undefined for one seed) are dropped and counted in ``n_nan``.
    """
    raw = np.asarray(values, float)
    x = raw[np.isfinite(raw)]
    n = int(x.size)
    out: dict[str, Any] = {
        "mean": float(x.mean()) if n else float("nan"),
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "min": float(x.min()) if n else float("nan"),
        "max": float(x.max()) if n else float("nan"),
        "n": n,
        "n_nan": int(raw.size - n),
        "confidence": confidence,
    }
    if n >= 2:
        if np.ptp(x) > 0:
            sem = float(sps.sem(x))
            low, high = sps.t.interval(confidence, n - 1, loc=out["mean"], scale=sem)
        else:  # identical seeds (scipy needs a positive scale): the interval is the mean
            low = high = out["mean"]
        out["ci_low"], out["ci_high"] = float(low), float(high)
    out["within_noise"] = within_noise(out["ci_low"], out["ci_high"])
    return out


def paired_test(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """Paired t-test of ``a`` against ``b`` over seeds (same order), with the CI of ``a - b``.

    Pairs where either value is NaN are dropped.
    """
    xa, xb = np.asarray(a, float), np.asarray(b, float)
    if xa.shape != xb.shape:
        raise ValueError(f"paired test needs equal lengths, got {xa.size} and {xb.size}")
    keep = np.isfinite(xa) & np.isfinite(xb)
    xa, xb = xa[keep], xb[keep]
    diff = mean_ci(xa - xb, confidence)
    p_value = float("nan")
    if xa.size >= 2 and np.any(xa != xb):
        p_value = float(sps.ttest_rel(xa, xb).pvalue)
    return {
        "mean_diff": diff["mean"],
        "ci_low": diff["ci_low"],
        "ci_high": diff["ci_high"],
        "min_diff": diff["min"],
        "max_diff": diff["max"],
        "p_value": p_value,
        "n": diff["n"],
        "within_noise": diff["within_noise"],
    }


def describe(stat: dict[str, Any], percent: bool = True) -> str:
    """One-line text of a :func:`mean_ci` result: mean [low, high], with "within noise"."""

    def fmt(v: float) -> str:
        if not math.isfinite(v):
            return "n/a"
        return f"{100 * v:+.1f}%" if percent else f"{v:.3g}"

    text = f"{fmt(stat['mean'])} [{fmt(stat['ci_low'])}, {fmt(stat['ci_high'])}]"
    return text + (" (within noise)" if stat["within_noise"] else "")


def seed_statistics(
    summaries: Sequence[dict[str, Any]], targets: Sequence[str] = ("80", "90", "95", "99")
) -> dict[str, Any]:
    """Statistics over seeds of per-seed comparisons (slaq.metrics.summarize outputs).

    Per policy: mean, CI and min-max of each improvement, and paired t-tests over seeds of the
    baseline's against the policy's mean quality and mean 90% delay (positive = policy better).
    """
    if not summaries:
        return {"n_seeds": 0, "policies": {}}
    baseline = summaries[0]["baseline"]
    if any(s["baseline"] != baseline for s in summaries):
        raise ValueError("per-seed comparisons use different baselines")
    policies: dict[str, Any] = {}
    for name in summaries[0]["policies"]:
        if name == baseline or any(name not in s["policies"] for s in summaries):
            continue
        runs = [s["policies"][name] for s in summaries]
        base = [s["policies"][baseline] for s in summaries]
        entry = {
            "quality_improvement": mean_ci([r["quality_improvement"] for r in runs]),
            "total_loss_reduction": mean_ci(
                [r.get("total_loss_reduction", math.nan) for r in runs]
            ),
            "share_sooner_90": mean_ci(
                [r.get("share_sooner", {}).get("90", math.nan) for r in runs]
            ),
            "paired_quality": paired_test(
                [b["mean_quality"] for b in base], [r["mean_quality"] for r in runs]
            ),
            "paired_delay90_s": paired_test(
                [b["mean_delay_s"]["90"] for b in base], [r["mean_delay_s"]["90"] for r in runs]
            ),
        }
        for x in targets:
            entry[f"delay_reduction_{x}"] = mean_ci([r["delay_reduction"][x] for r in runs])
        policies[name] = entry
    return {"n_seeds": len(summaries), "baseline": baseline, "policies": policies}
