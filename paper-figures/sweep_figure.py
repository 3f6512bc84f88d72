"""(h) The load sweep: each policy's improvement over the baseline against offered load.

Reads the report of ``slaq sweep report`` (sweep.json; its layout is documented in
slaq/sweep.py): ``cells`` with mix, load, policy label and, per metric, the mean and 95%
confidence interval over seeds. Rows are curve mixes, columns the metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from plotting import band, existing, load_json, no_data, save

# (column title, metric in sweep.json). Each cell carries metrics {METRIC: STAT}, STAT =
# {"mean", "ci_low", "ci_high", ...} over seeds, improvements as fractions.
METRICS = (
    # Short titles: three columns of panels share one figure width.
    ("(a) quality", "quality_improvement"),
    ("(b) total normalized loss", "total_loss_reduction"),
    ("(c) 90% delay", "delay_reduction_90"),
)


def _stat(cell: dict, metric: str) -> dict | None:
    """A cell's STAT for a metric (also read from a nested delay_reduction {"90": STAT})."""
    found = (cell.get("metrics") or {}).get(metric) or cell.get(metric)
    if found is None and metric.startswith("delay_reduction_"):
        found = (cell.get("delay_reduction") or {}).get(metric.rsplit("_", 1)[1])
    return found if isinstance(found, dict) and found.get("mean") is not None else None


def _frame(report: dict) -> pd.DataFrame:
    """One row per (mix, label, load, metric) in percent; the baseline itself is left out."""
    baseline = report.get("baseline", "fair")
    rows = []
    for cell in report.get("cells", []):
        label = cell.get("label") or cell.get("policy")
        if label == baseline:
            continue
        for title, metric in METRICS:
            stat = _stat(cell, metric)
            if stat is None:
                continue
            mean = 100.0 * stat["mean"]
            lo, hi = stat.get("ci_low"), stat.get("ci_high")
            rows.append(
                {
                    "mix": cell["mix"],
                    "label": label,
                    "load": float(cell["load"]),
                    "metric": title,
                    "mean": mean,
                    "lo": mean if lo is None else 100.0 * lo,
                    "hi": mean if hi is None else 100.0 * hi,
                }
            )
    return pd.DataFrame(rows)


def _panel(ax: plt.Axes, part: pd.DataFrame, colours: dict[str, tuple]) -> None:
    for label, line in part.groupby("label", sort=True):
        line = line.sort_values("load")
        band(
            ax,
            line["load"],
            line["mean"],
            line["lo"],
            line["hi"],
            marker="o",
            label=label,
            color=colours[label],
        )
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_xscale("log", base=2)
    loads = sorted(set(part["load"]))
    ax.set_xticks(loads, [f"{x:g}" for x in loads])
    ax.minorticks_off()


def sweep(paths: Sequence[Path], out: Path) -> None:
    """(h) quality, total-loss and 90%-delay improvement against load, per mix and policy."""
    found = existing(paths)
    report = load_json(found[0]) if found else {}
    data = _frame(report)
    mixes = list(dict.fromkeys(data["mix"])) if len(data) else ["none"]
    fig, axes = plt.subplots(
        len(mixes),
        len(METRICS),
        figsize=(4.2 * len(METRICS), 3.2 * len(mixes)),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    # One colour per policy across all panels (an ablation label may exist at one load only).
    labels = sorted(set(data["label"])) if len(data) else []
    colours = dict(zip(labels, sns.color_palette("tab10", max(len(labels), 1)), strict=False))
    baseline = report.get("baseline", "fair")
    for row, mix in zip(axes, mixes, strict=True):
        for ax, (title, _) in zip(row, METRICS, strict=True):
            part = data[(data["mix"] == mix) & (data["metric"] == title)] if len(data) else data
            if part.empty:
                no_data(ax, "no sweep cells")
            else:
                _panel(ax, part, colours)
            ax.set(title=f"{title}, {mix} curves", ylabel=f"better than {baseline} (%)")
    for ax in axes[-1]:
        ax.set_xlabel("offered load (work / capacity)")
    # A figure legend from the colour table: every label, whichever panels it appears in.
    handles = [Line2D([], [], color=c, marker="o", label=label) for label, c in colours.items()]
    if handles:
        fig.legend(handles=handles, title="policy (mean, 95% CI)", loc="outside right upper")
    fig.suptitle("Load sweep in the simulator: improvement over the baseline")
    save(fig, out)
