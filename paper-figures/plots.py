"""Figures of the SLAQ reproduction (matplotlib/seaborn; each written as PNG and PDF).

Usage: ``python paper-figures/plots.py FIGURE --out FILE.png [--live F...] [--sim F...]
[--runs DIR...] [--input F...]``; the pipeline's one figure rule (rules/figures.smk) calls it
once per figure. Missing or empty optional inputs give a panel saying so, not a failure.

* ``quality``     (a) average normalized loss over time per policy, live and simulated; mean
                  over seeds with a 95% confidence band
* ``delay``       (b) mean time to 80/90/95/99% loss reduction per policy (95% CI over seeds)
* ``cores``       (c) cores per job over time for each policy (stacked area, first seed)
* ``returns``     (d) normalized loss against iteration, per algorithm
* ``overhead``    (e) decision time against jobs and cores (log-log)
* ``prediction``  (f) loss-prediction error against look-ahead, per predictor
* ``fidelity``    (g) the simulator calibrated on one seed against the live runs of the others
* ``sweep``       (h) improvement over fair against offered load, per mix (sweep_figure.py)
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from fidelity_figure import fidelity
from plotting import band, existing, legend_outside, load_json, mean_ci, no_data, save, theme
from sweep_figure import sweep

log = logging.getLogger("plots")
GRID_POINTS = 500


def _seed_curves(paths: Sequence[Path]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Quality curves of every seed on one common time grid: policy -> (seeds x grid)."""
    metrics = [load_json(p) for p in paths]
    end = max(float(m["grid_s"][-1]) for m in metrics)
    grid = np.linspace(0.0, end, GRID_POINTS)
    curves: dict[str, list[np.ndarray]] = {}
    for m in metrics:
        own = np.asarray(m["grid_s"], float)
        for policy, values in m["quality_curves"].items():
            q = np.asarray(values, float)
            q[q < 0] = np.nan  # -1 marks instants with no active job
            curves.setdefault(policy, []).append(np.interp(grid, own, q, left=np.nan, right=np.nan))
    return grid, {p: np.vstack(c) for p, c in curves.items()}


def quality(live: Sequence[Path], sim: Sequence[Path], out: Path) -> None:
    """(a) average normalized loss of active jobs over time, per policy, mean and 95% CI."""
    panels = [("live (Spark)", existing(live)), ("simulated (paper scale)", existing(sim))]
    panels = [(name, paths) for name, paths in panels if paths] or [("no runs", [])]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (name, paths) in zip(axes[0], panels, strict=True):
        if not paths:
            no_data(ax, "no quality curves")
            continue
        grid, curves = _seed_curves(paths)
        for policy, matrix in sorted(curves.items()):
            band(ax, grid, *mean_ci(matrix), label=policy)
        ax.set(
            xlabel="time since start (s)",
            ylabel="average normalized loss (1 = start)",
            title=f"{name}: average quality of active jobs\n"
            f"(mean over {len(paths)} seed(s), 95% CI)",
            ylim=(0, 1.05),
        )
        ax.legend(title="policy", loc="upper right")
    save(fig, out)


def _ci_bounds(values: np.ndarray) -> tuple[float, float]:
    _, lo, hi = mean_ci(np.asarray(values, float)[:, None])
    return float(lo[0]), float(hi[0])


def delay(live: Sequence[Path], sim: Sequence[Path], out: Path) -> None:
    """(b) mean delay to x% loss reduction per policy; error bars: 95% CI over seeds."""
    rows = []
    for mode, paths in (("live", existing(live)), ("simulated", existing(sim))):
        for seed, path in enumerate(paths):
            for policy, entry in load_json(path)["policies"].items():
                for target, value in entry["mean_delay_s"].items():
                    rows.append(
                        {
                            "mode": mode,
                            "seed": seed,
                            "policy": policy,
                            "target": f"{target}%",
                            "delay_s": value,
                        }
                    )
    data = pd.DataFrame(rows)
    modes = list(dict.fromkeys(data["mode"])) if len(data) else ["no runs"]
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        part = data[data["mode"] == mode] if len(data) else data
        if part.empty:
            no_data(ax, "no delays")
            continue
        sns.barplot(data=part, x="target", y="delay_s", hue="policy", errorbar=_ci_bounds, ax=ax)
        n = part["seed"].nunique()
        ax.set(
            xlabel="loss reduction reached",
            ylabel="mean time from arrival (s)",
            title=f"{mode} ({n} seed(s))",
        )
        if ax is axes[0, -1]:
            legend_outside(ax, "policy")
        else:
            ax.get_legend().remove()
    fig.suptitle("Time to reach x% of the achievable loss reduction (error bars: 95% CI)")
    save(fig, out)


def cores(runs: Sequence[Path], out: Path) -> None:
    """(c) cores held by each job over time (stacked), one panel per policy."""
    runs = existing(runs)
    fig, axes = plt.subplots(
        max(len(runs), 1), 1, figsize=(8, 3 * max(len(runs), 1)), squeeze=False, sharex=True
    )
    if not runs:
        no_data(axes[0, 0], "no live runs")
    for ax, run in zip(axes[:, 0], runs, strict=False):
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
                linewidth=0,
                colors=sns.color_palette("husl", wide.shape[1]),
            )
        ax.set(ylabel="cores", title=f"{policy}: cores per job (one colour per job)")
    axes[-1, 0].set_xlabel("time since start (s)")
    save(fig, out)


def returns(runs: Sequence[Path], out: Path) -> None:
    """(d) diminishing returns: normalized loss against iteration per algorithm."""
    from slaq.metrics import add_quality
    from slaq.traces import read_run

    # L* is per job of one workload; job ids repeat across seeds, so normalize seed by seed.
    by_seed: dict[object, dict[str, pd.DataFrame]] = {}
    for run in existing(runs):
        seed = read_run(Path(run)).get("seed")
        by_seed.setdefault(seed, {})[str(run)] = pd.read_parquet(Path(run) / "trace.parquet")
    frames = [f for traces in by_seed.values() for f in add_quality(traces).values()]
    fig, ax = plt.subplots(figsize=(7, 4))
    if not frames:
        no_data(ax, "no live runs")
    else:
        data = pd.concat(frames, ignore_index=True)
        sns.lineplot(data=data, x="iteration", y="q", hue="algorithm", ax=ax, errorbar=("pi", 50))
        legend_outside(ax, "algorithm (median, IQR band)")
    ax.set(
        xlabel="iteration",
        ylabel="normalized loss (1 = first iteration, 0 = best)",
        title="Diminishing returns: most of the loss reduction comes early",
        ylim=(-0.02, 1.05),
    )
    save(fig, out)


def overhead(paths: Sequence[Path], out: Path) -> None:
    """(e) A whole SLAQ epoch (refit, snapshot, allocate) against jobs, beside scipy per job."""
    rows = []
    for path in existing(paths):
        for r in load_json(path)["results"]:
            label = f"{r['predictor']}, refit {r['refit']}"
            rows.append({"jobs": r["jobs"], "cores": f"{int(r['cores'])} cores",
                         "variant": label, "ms": r["epoch_ms"]["p50"]})  # fmt: skip
            if r.get("reference_epoch_ms") and r["predictor"] == "curvefit":
                rows.append({"jobs": r["jobs"], "cores": f"{int(r['cores'])} cores",
                             "variant": f"scipy per job, refit {r['refit']}",
                             "ms": r["reference_epoch_ms"]})  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 4.2))
    if rows:
        sns.lineplot(
            data=pd.DataFrame(rows), x="jobs", y="ms", hue="variant", style="cores",
            markers=True, ax=ax,
        )  # fmt: skip
        ax.axhline(100.0, color="grey", lw=0.8, ls=":", label="100 ms target")
        ax.set(xscale="log", yscale="log")
        legend_outside(ax)
    else:
        no_data(ax, "no epoch benchmark")
    ax.set(
        xlabel="concurrent jobs",
        ylabel="whole epoch, p50 (ms)",
        title="Scheduling overhead: refit + snapshot + allocation per epoch",
    )
    save(fig, out)


def prediction(paths: Sequence[Path], out: Path) -> None:
    """(f) relative error of the predicted loss k iterations ahead, per predictor."""
    rows = [
        {
            "curves": f"{group} ({s['curves']})",
            "predictor": predictor,
            "horizon": int(h),
            "error": s["median"],
        }  # fmt: skip
        for path in existing(paths)
        for group, preds in load_json(path)["groups"].items()
        for predictor, by_h in preds.items()
        for h, s in by_h.items()
    ]
    if not rows:
        fig, ax = plt.subplots(figsize=(7, 4))
        no_data(ax, "no prediction benchmark")
        save(fig, out)
        return
    grid = sns.relplot(
        data=pd.DataFrame(rows),
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
    save(grid.figure, out)


FIGURES = ("quality", "delay", "cores", "returns", "overhead", "prediction", "fidelity", "sweep")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: one figure per call."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("figure", choices=FIGURES)
    for flag in ("live", "sim", "runs", "input"):
        parser.add_argument(f"--{flag}", nargs="*", default=[], type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    theme()
    if args.figure in ("quality", "delay"):
        globals()[args.figure](args.live, args.sim, args.out)
    elif args.figure in ("cores", "returns", "fidelity"):
        {"cores": cores, "returns": returns, "fidelity": fidelity}[args.figure](args.runs, args.out)
    else:
        {"overhead": overhead, "prediction": prediction, "sweep": sweep}[args.figure](
            args.input, args.out
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
