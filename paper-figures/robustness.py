"""Robustness figure: SLAQ variants' gains over fair sharing against the share of non-smooth jobs.

Usage: ``python paper-figures/robustness.py results/robustness.json paper-figures/robustness.png``
(reads the JSON of ``benchmarks/robustness.py``; writes the PNG and a PDF next to it).
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
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

log = logging.getLogger("robustness-figure")

# Policies drawn, in legend order (fifo is far off the scale and the ablation has its own table).
POLICIES = ("slaq-robust", "slaq-proto", "slaq-curvefit")
LABELS = {
    "slaq-robust": "SLAQ robust (denoised trend, 1-core floor)",
    "slaq-proto": "SLAQ prototype rule (last-two ratio, 3-core floor)",
    "slaq-curvefit": "SLAQ curve fit (3-core floor)",
}


def _frame(results: dict) -> pd.DataFrame:
    """One row per (mix, load, seed, policy) with the non-smooth share and both metrics in %."""
    mixes = results["config"]["mixes"]
    rows = []
    for r in results["records"]:
        if r["policy"] not in POLICIES:
            continue
        shares = mixes[r["mix"]]
        rows.append(
            {
                "non_smooth_pct": 100.0 * (shares["noisy"] + shares["plateau"]),
                "policy": LABELS.get(r["policy"], r["policy"]),
                "quality": 100.0 * r["quality_improvement"],
                "delay90": 100.0 * r["delay_reduction"]["90"],
            }
        )
    return pd.DataFrame(rows)


def plot_robustness(results_json: Path, out_png: Path) -> None:
    """Quality improvement and 90%-delay reduction over fair against the non-smooth share."""
    results = json.loads(Path(results_json).read_text())
    frame = _frame(results)
    if frame.empty:
        raise ValueError(f"{results_json}: no records of the policies {', '.join(POLICIES)}")
    cfg = results["config"]
    order = [LABELS[p] for p in POLICIES if LABELS[p] in set(frame["policy"])]
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), sharex=True)
    panels = (
        ("quality", "Quality improvement over fair (%)"),
        ("delay90", "Delay-to-90% reduction over fair (%)"),
    )
    for ax, (metric, ylabel) in zip(axes, panels, strict=True):
        sns.lineplot(
            data=frame,
            x="non_smooth_pct",
            y=metric,
            hue="policy",
            hue_order=order,
            style="policy",
            style_order=order,
            markers=True,
            dashes=False,
            errorbar=("pi", 100),
            ax=ax,
        )
        ax.axhline(0.0, color="black", lw=1, ls="--", label="fair sharing")
        ax.set_xlabel("Share of noisy and plateau jobs in the workload (%)")
        ax.set_ylabel(ylabel)
        ax.set_xticks(sorted(frame["non_smooth_pct"].unique()))
        ax.set_title("Time-averaged quality" if metric == "quality" else "Mean delay to 90%")
        ax.get_legend().remove()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False)
    cells = len(cfg["loads"]) * cfg["seeds"]
    fig.suptitle(
        "SLAQ variants against fair sharing as loss curves get noisy or plateau\n"
        f"({cfg['cores']} cores, {cfg['jobs']} jobs per run; line: mean of {cells} "
        "load x seed runs, band: worst to best run)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 0.93))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    for path in (out_png, out_png.with_suffix(".pdf")):
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=150)
        tmp.replace(path)
        log.info("wrote %s", path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: results JSON in, PNG (and PDF) out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="JSON written by benchmarks/robustness.py")
    parser.add_argument("out", type=Path, help="PNG to write (a PDF is written next to it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    plot_robustness(args.results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
