"""(g) Simulator fidelity: the simulator calibrated on one live seed against other live seeds.

Reads the JSON of ``slaq fidelity`` (one file per policy). Two layouts are drawn: quality
curves (``live`` and ``simulated`` metrics with ``quality_curves``, the in-sample replay) as
lines; anything else as a bar chart of every numeric field whose name says ``error``, so the
figure survives changes of the fidelity report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from plotting import existing, legend_outside, load_json, no_data, numeric_leaves, save


def _curve_rows(report: dict) -> list[dict]:
    rows = []
    for mode in ("live", "simulated"):
        metrics = report.get(mode) or {}
        grid = np.asarray(metrics.get("grid_s", []), float)
        for policy, values in (metrics.get("quality_curves") or {}).items():
            q = np.asarray(values, float)
            keep = q >= 0
            rows += [
                {"time_s": t, "quality": v, "policy": policy, "mode": mode}
                for t, v in zip(grid[keep], q[keep], strict=True)
            ]
    return rows


def _error_rows(name: str, report: dict) -> list[dict]:
    return [
        {"policy": name, "metric": key, "error": abs(value)}
        for key, value in numeric_leaves(report).items()
        if "error" in key.lower()
    ]


def fidelity(paths: Sequence[Path], out: Path) -> None:
    """(g) curves when the reports carry them, otherwise prediction errors per policy."""
    curves, errors = [], []
    for path in existing(paths):
        report = load_json(path)
        curves += _curve_rows(report)
        errors += _error_rows(Path(path).stem, report)
    fig, ax = plt.subplots(figsize=(8, 4))
    if curves:
        sns.lineplot(
            data=pd.DataFrame(curves),
            x="time_s",
            y="quality",
            hue="policy",
            style="mode",
            ax=ax,
            errorbar=None,
        )
        ax.set(xlabel="time since start (s)", ylabel="average normalized loss", ylim=(0, 1.05))
        legend_outside(ax)
    elif errors:
        sns.barplot(
            data=pd.DataFrame(errors), y="metric", x="error", hue="policy", ax=ax, errorbar=None
        )
        ax.set(xlabel="absolute prediction error", ylabel="")
        legend_outside(ax, "policy")
    else:
        no_data(ax, "no fidelity reports")
    ax.set_title("Simulator fidelity: calibrated on one live seed, predicting the others")
    save(fig, out)
