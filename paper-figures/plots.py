"""Figures of the SLAQ reproduction (seaborn; each written as PNG and PDF).

Usage: ``python paper-figures/plots.py FIGURE --out FILE.png [inputs...]``; the Snakefile calls
one figure per rule. Figures:

* ``quality``     (a) average normalized loss over time, per policy, live and simulated
* ``delay``       (b) mean time to 80/90/95/99% loss reduction, per policy
* ``cores``       (c) cores per job over time for each policy (stacked area)
* ``returns``     (d) normalized loss against iteration, per algorithm
* ``overhead``    (e) decision time against jobs and cores (log-log)
* ``prediction``  (f) loss-prediction error against look-ahead, per predictor
* ``fidelity``    (g) simulated against live average quality
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

log = logging.getLogger("plots")
sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def _save(fig: plt.Figure, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    for path in (out, out.with_suffix(".pdf")):
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=150)
        tmp.replace(path)
    plt.close(fig)
    log.info("wrote %s", out)


def _load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _curves(metrics: dict, label: str) -> pd.DataFrame:
    grid = np.asarray(metrics["grid_s"])
    frames = []
    for policy, values in metrics["quality_curves"].items():
        q = np.asarray(values, float)
        keep = q >= 0  # -1 marks instants with no active job
        frames.append(
            pd.DataFrame(
                {"time_s": grid[keep], "quality": q[keep], "policy": policy, "mode": label}
            )
        )
    return pd.concat(frames, ignore_index=True)


def quality(live: Sequence[Path], sim: Sequence[Path], out: Path) -> None:
    """(a) average normalized loss of active jobs over time, per policy."""
    panels = [("live (Spark)", live), ("simulated (paper scale)", sim)]
    panels = [(name, paths) for name, paths in panels if paths]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (name, paths) in zip(axes[0], panels, strict=True):
        data = pd.concat([_curves(_load(p), name).assign(seed=i) for i, p in enumerate(paths)])
        sns.lineplot(data=data, x="time_s", y="quality", hue="policy", ax=ax, errorbar=None)
        ax.set(
            xlabel="time since start (s)",
            ylabel="average normalized loss (1 = start)",
            title=f"{name}: average quality of active jobs",
            ylim=(0, 1.05),
        )
    _save(fig, out)


def delay(live: Sequence[Path], sim: Sequence[Path], out: Path) -> None:
    """(b) mean delay to x% loss reduction per policy."""
    rows = []
    for mode, paths in (("live", live), ("simulated", sim)):
        for path in paths:
            for policy, entry in _load(path)["policies"].items():
                for target, value in entry["mean_delay_s"].items():
                    rows.append(
                        {"mode": mode, "policy": policy, "target": f"{target}%", "delay_s": value}
                    )
    data = pd.DataFrame(rows)
    grid = sns.catplot(
        data=data,
        x="target",
        y="delay_s",
        hue="policy",
        col="mode",
        kind="bar",
        sharey=False,
        height=4,
        aspect=1.2,
        errorbar=None,
    )
    grid.set_axis_labels("loss reduction reached", "mean time from arrival (s)")
    grid.figure.suptitle("Time to reach x% of the achievable loss reduction", y=1.02)
    _save(grid.figure, out)


def cores(runs: Sequence[Path], out: Path) -> None:
    """(c) cores held by each job over time (stacked), one panel per policy."""
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 3 * len(runs)), squeeze=False, sharex=True)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        alloc = pd.read_parquet(Path(run) / "allocations.parquet")
        policy = alloc["policy"].iloc[0] if len(alloc) else Path(run).name
        wide = alloc.pivot_table(
            index="t_s", columns="job_id", values="cores", aggfunc="sum", fill_value=0
        ).sort_index()
        if not wide.empty:
            ax.stackplot(
                wide.index,
                wide.T.to_numpy(),
                step="post",
                colors=sns.color_palette("husl", wide.shape[1]),
                linewidth=0,
            )
        ax.set(ylabel="cores", title=f"{policy}: cores per job (one colour per job)")
    axes[-1, 0].set_xlabel("time since start (s)")
    _save(fig, out)


def returns(runs: Sequence[Path], out: Path) -> None:
    """(d) diminishing returns: normalized loss against iteration per algorithm."""
    from slaq.metrics import add_quality

    traces = {str(r): pd.read_parquet(Path(r) / "trace.parquet") for r in runs}
    data = pd.concat(add_quality(traces).values(), ignore_index=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=data, x="iteration", y="q", hue="algorithm", ax=ax, errorbar=("pi", 50))
    ax.set(
        xlabel="iteration",
        ylabel="normalized loss (1 = first iteration, 0 = best)",
        title="Diminishing returns: most of the loss reduction comes early",
        ylim=(-0.02, 1.05),
    )
    _save(fig, out)


def overhead(path: Path, out: Path) -> None:
    """(e) SLAQ's decision time against jobs and cores, fast and reference heap."""
    results = pd.DataFrame(_load(path)["results"])
    rows = []
    for _, r in results.iterrows():
        for impl in ("fast", "heap"):
            if f"{impl}_p50_ms" in r and pd.notna(r[f"{impl}_p50_ms"]):
                rows.append(
                    {
                        "jobs": r["jobs"],
                        "cores": f"{int(r['cores'])} cores",
                        "implementation": impl,
                        "ms": r[f"{impl}_p50_ms"],
                    }
                )
    data = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(
        data=data, x="jobs", y="ms", hue="cores", style="implementation", markers=True, ax=ax
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="concurrent jobs",
        ylabel="decision time per epoch, p50 (ms)",
        title="Scheduling overhead of one SLAQ allocation",
    )
    _save(fig, out)


def prediction(path: Path, out: Path) -> None:
    """(f) relative error of the predicted loss k iterations ahead, per predictor."""
    rows = []
    for group, preds in _load(path)["families"].items():
        for predictor, by_h in preds.items():
            for horizon, stats in by_h.items():
                rows.append(
                    {
                        "curves": group,
                        "predictor": predictor,
                        "horizon": int(horizon),
                        "error": stats["median"],
                    }
                )
    data = pd.DataFrame(rows)
    grid = sns.relplot(
        data=data,
        x="horizon",
        y="error",
        hue="predictor",
        col="curves",
        col_wrap=4,
        kind="line",
        marker="o",
        height=3,
        facet_kws={"sharey": False},
    )
    grid.set_axis_labels("look-ahead (iterations)", "median relative error")
    grid.figure.suptitle("Loss prediction error: curve fit vs geometric", y=1.02)
    _save(grid.figure, out)


def fidelity(pairs: Sequence[Path], out: Path) -> None:
    """(g) simulated replay of a live run against the live run, average quality over time."""
    frames = []
    for path in pairs:
        d = _load(path)
        frames.append(_curves(d["live"], "live"))
        frames.append(_curves(d["simulated"], "simulated"))
    data = pd.concat(frames, ignore_index=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(
        data=data, x="time_s", y="quality", hue="policy", style="mode", ax=ax, errorbar=None
    )
    ax.set(
        xlabel="time since start (s)",
        ylabel="average normalized loss",
        title="Simulator fidelity: live run vs its simulated replay",
        ylim=(0, 1.05),
    )
    _save(fig, out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: one figure per call."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "figure",
        choices=["quality", "delay", "cores", "returns", "overhead", "prediction", "fidelity"],
    )
    parser.add_argument("--live", nargs="*", default=[], type=Path)
    parser.add_argument("--sim", nargs="*", default=[], type=Path)
    parser.add_argument("--runs", nargs="*", default=[], type=Path)
    parser.add_argument("--input", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.figure in ("quality", "delay"):
        globals()[args.figure](args.live, args.sim, args.out)
    elif args.figure in ("cores", "returns"):
        globals()[args.figure](args.runs, args.out)
    elif args.figure == "fidelity":
        fidelity(args.runs, args.out)
    else:
        if args.input is None:
            parser.error(f"{args.figure} needs --input")
        globals()[args.figure](args.input, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
