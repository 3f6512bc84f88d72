"""(g) Simulator fidelity out of sample: calibrated on the first seed's live runs, predicting
the live runs of the other seeds from their workloads alone.

Reads the JSON of ``slaq fidelity --calibrate ... --predict ...`` (layout in slaq/fidelity.py):
``runs`` (live and predicted mean quality per run) and ``improvements`` (live and predicted
improvement over the baseline per seed and policy). Left: predicted against live mean quality
of every run; right: predicted against live improvement over the baseline. Points on the
diagonal are perfect predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from plotting import existing, load_json, no_data, save

PANELS = (
    ("runs", "live_mean_quality", "sim_mean_quality", "mean normalized loss per run"),
    (
        "improvements",
        "live_quality_improvement",
        "sim_quality_improvement",
        "quality improvement over baseline",
    ),
    (
        "improvements",
        "live_delay_reduction_90",
        "sim_delay_reduction_90",
        "90% delay reduction over baseline",
    ),
)


def _scatter(ax: plt.Axes, rows: list[dict], cols: tuple[str, str], palette: dict) -> None:
    live, sim = cols
    data = pd.DataFrame([r for r in rows if r.get(live) is not None and r.get(sim) is not None])
    if data.empty:
        no_data(ax, "no runs")
        return
    sns.scatterplot(
        data=data, x=live, y=sim, hue="policy", palette=palette, s=60, ax=ax, legend=False
    )
    lo = float(min(data[live].min(), data[sim].min()))
    hi = float(max(data[live].max(), data[sim].max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.4", linewidth=0.8, ls="--")


def fidelity(paths: Sequence[Path], out: Path) -> None:
    """(g) predicted against live metrics of runs the simulator was not calibrated on."""
    reports = [load_json(p) for p in existing(paths)]
    policies = sorted(
        {
            r["policy"]
            for rep in reports
            for k in ("runs", "improvements")
            for r in rep.get(k, [])
            if "policy" in r
        }
    )
    palette = dict(zip(policies, sns.color_palette("tab10", max(len(policies), 1)), strict=False))
    fig, axes = plt.subplots(
        1, len(PANELS), figsize=(4.4 * len(PANELS), 4), squeeze=False, layout="constrained"
    )
    for ax, (key, live, sim, what) in zip(axes[0], PANELS, strict=True):
        _scatter(ax, [row for rep in reports for row in rep.get(key, [])], (live, sim), palette)
        ax.set(title=what, xlabel="live", ylabel="predicted by the simulator")
    handles = [Line2D([], [], color=c, marker="o", ls="", label=p) for p, c in palette.items()]
    if handles:
        fig.legend(handles=handles, title="policy", loc="outside right upper")
    errors = reports[0].get("errors", {}) if reports else {}
    note = ", ".join(f"{k} {v:.3g}" for k, v in errors.items() if isinstance(v, (int, float)))
    fig.suptitle(
        "Simulator fidelity out of sample: calibrated on the first seed, predicting the others"
        + (f"\nmean absolute errors: {note}" if note else "")
    )
    save(fig, out)
