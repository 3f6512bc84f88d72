"""``results/summary.md``: our live and simulated numbers beside the paper's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slaq.stats import seed_statistics
from slaq.summary_live import live_runs_section, premise_section, scaling_section
from slaq.traces import write_text_atomic

PAPER_QUALITY = 0.73
PAPER_DELAY = 0.44


def _load(paths: Sequence[Path]) -> list[dict[str, Any]]:
    return [json.loads(Path(p).read_text()) for p in paths]


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:+.1f}%"


def _ci(stat: dict[str, Any]) -> str:
    """``mean [low, high]`` in percent, marked "within noise" when the CI crosses zero."""
    if stat["n"] < 2:
        return f"{_pct(stat['mean'])} (1 seed)"
    text = f"{_pct(stat['mean'])} [{_pct(stat['ci_low'])}, {_pct(stat['ci_high'])}]"
    return text + (" within noise" if stat["within_noise"] else "")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows] + [""]


SEED_COLUMNS = [
    "policy",
    "quality impr. mean [95% CI]",
    "min-max",
    "total loss red. [95% CI]",
    *(f"delay red. {t}% [95% CI]" for t in ("80", "90", "95", "99")),
    "jobs 90% sooner",
    "paired t-test p (quality / 90% delay)",
]


def _seed_row(policy: str, e: dict[str, Any]) -> list[str]:
    q = e["quality_improvement"]
    return [
        f"`{policy}`",
        _ci(q),
        f"{_pct(q['min'])} .. {_pct(q['max'])}",
        _ci(e["total_loss_reduction"]),
        *(_ci(e[f"delay_reduction_{t}"]) for t in ("80", "90", "95", "99")),
        _pct(e["share_sooner_90"]["mean"]).lstrip("+"),
        f"{e['paired_quality']['p_value']:.2f} / {e['paired_delay90_s']['p_value']:.2f}",
    ]


def _comparison_table(runs: list[dict[str, Any]], title: str) -> list[str]:
    """Mean [95% CI] over seeds, min-max and paired tests of per-seed comparisons."""
    if not runs:
        return [f"### {title}", "", "(not run in this configuration)", ""]
    st = seed_statistics(runs)
    lines = [
        f"### {title} (against `{st['baseline']}`, {st['n_seeds']} seed(s))",
        "",
        'Mean over seeds with its 95% confidence interval (Student t); "within noise" where '
        "the interval contains zero. Total loss: sum over all jobs of normalized loss x time.",
        "",
    ]
    rows = [_seed_row(p, e) for p, e in st["policies"].items()]
    lines += _table(SEED_COLUMNS, rows)
    lines += [
        f"Paper (SoCC'17): up to {PAPER_QUALITY:.0%} better average quality, up to "
        f"{PAPER_DELAY:.0%} lower delay than fair sharing.",
        "",
    ]
    return lines


SWEEP_COLUMNS = [
    "load",
    "policy",
    "seeds",
    "quality impr. [95% CI]",
    "total loss red. [95% CI]",
    *(f"delay red. {t}% [95% CI]" for t in ("80", "90", "95", "99")),
    "jobs 90% sooner",
]
REGIME_COLUMNS = [
    "mix",
    "load",
    "seeds",
    "median epochs a job lives",
    "mean active jobs",
    "offered load",
    "paper regime (>= 50 epochs, >= 10 active)",
]


def _sweep_row(cell: dict[str, Any]) -> list[str]:
    m = cell["metrics"]
    return [
        f"{cell['load']:g}",
        f"`{cell['policy']}`",
        str(cell["n_seeds"]),
        _ci(m["quality_improvement"]),
        _ci(m["total_loss_reduction"]),
        *(_ci(m[f"delay_reduction_{t}"]) for t in ("80", "90", "95", "99")),
        _pct(m["share_sooner_90"]["mean"]).lstrip("+"),
    ]


def _sweep_mix(data: dict[str, Any], mix: str) -> list[str]:
    """One mix: the table over loads, "up to" (best load's seed mean) and where policies lose."""
    base = data["baseline"]
    cells = [c for c in data["cells"] if c["mix"] == mix and c["policy"] != base]
    cells.sort(key=lambda c: (c["load"], c["policy"]))
    lines = [f"#### Mix `{mix}` (against `{base}`)", ""]
    lines += _table(SWEEP_COLUMNS, [_sweep_row(c) for c in cells])
    for policy, best in sorted(data["up_to"].get(mix, {}).items()):
        q, d = best.get("quality_improvement"), best.get("delay_reduction_90")
        if q and d:
            lines.append(
                f"- `{policy}`: up to {_pct(q['mean'])} quality (load {q['load']:g}), up to "
                f"{_pct(d['mean'])} lower 90% delay (load {d['load']:g}); best load's seed mean."
            )
    for policy, lost in sorted(data["loses"].get(mix, {}).items()):
        where = ", ".join(f"{x['metric']} at load {x['load']:g} ({_pct(x['mean'])})" for x in lost)
        lines.append(f"- `{policy}` loses (CI below zero): {where or 'nowhere'}")
    return lines + [""]


def _regime_table(data: dict[str, Any]) -> list[str]:
    def stat(s: dict[str, Any], fmt: str) -> str:
        return f"{s['mean']:{fmt}} ({s['min']:{fmt}}-{s['max']:{fmt}})"

    rows = [
        [
            r["mix"],
            f"{r['load']:g}",
            str(r["n_seeds"]),
            stat(r["median_epochs"], ".0f"),
            stat(r["mean_active_jobs"], ".1f"),
            stat(r["offered_load"], ".2f"),
            "yes" if r["paper_regime_all_seeds"] else "no",
        ]
        for r in data["regime"]
    ]
    head = [f"Regime of every simulated experiment, from the `{data['baseline']}` runs "
            "(mean over seeds, min-max in brackets):", ""]  # fmt: skip
    return head + _table(REGIME_COLUMNS, rows)


def _costs(data: dict[str, Any]) -> list[str]:
    """The fixed cost and CPU cost numbers the simulations used."""
    frame = pd.DataFrame(data["settings"])
    if frame.empty:
        return []
    lines = ["Iteration time = one-core CPU s x work scale / cores + Spark's fixed cost:", ""]
    for (fixed, source), g in frame.groupby(["fixed_cost_s", "fixed_cost_source"]):
        lines.append(f"- fixed cost per iteration {fixed:.3f} s ({source}); {len(g)} runs")
    for keys, g in frame.groupby(["library", "work_scale", "cores", "n_jobs", "epoch_s"]):
        lib, scale, cores, n_jobs, epoch = keys
        first = g.iloc[0]
        lines.append(
            f"- library `{lib}`: {int(first['library_curves'])} curves, one-core CPU s per "
            f"iteration median {first['cpu_s_per_iter_median']:.3f} (min "
            f"{first['cpu_s_per_iter_min']:.3f}, max {first['cpu_s_per_iter_max']:.3f}); "
            f"work scale {scale:.4g}; {cores} cores, {n_jobs} jobs, epoch {epoch:g} s"
        )
    return lines + [""]


def _ablation(data: dict[str, Any]) -> list[str]:
    """min_cores ablation: cells with a min_cores argument beside the default policy."""
    abl = [c for c in data["cells"] if "min_cores=" in c["policy"]]
    if not abl:
        return []
    names = {c["policy"].split("[")[0] for c in abl}
    keys = {(c["mix"], c["load"]) for c in abl}
    cells = [
        c
        for c in data["cells"]
        if (c["mix"], c["load"]) in keys and c["policy"].split("[")[0] in names
    ]
    cells.sort(key=lambda c: (c["mix"], c["load"], c["policy"]))
    head = ["mix", "load", "policy", "seeds", "quality impr.", "total loss red.", "delay red. 90%"]
    rows = [
        [c["mix"], f"{c['load']:g}", f"`{c['policy']}`", str(c["n_seeds"])]
        + [_ci(c["metrics"][m]) for m in ("quality_improvement", "total_loss_reduction")]
        + [_ci(c["metrics"]["delay_reduction_90"])]
        for c in cells
    ]
    return ["#### min_cores ablation", ""] + _table(head, rows)


def _sweep_section(path: Path | None) -> list[str]:
    if path is None:
        return []
    data = json.loads(Path(path).read_text())
    lines = ["### Load sweep (simulated at paper scale, curves from the curve library)", ""]
    lines += _regime_table(data)
    for mix in sorted({c["mix"] for c in data["cells"]}):
        lines += _sweep_mix(data, mix)
    return lines + _ablation(data) + _costs(data)


def _fidelity_section(paths: Sequence[Path]) -> list[str]:
    """In-sample replays (mad_*) and out-of-sample predictions (calibration) of live runs."""
    data = _load(paths)
    replays = [f for f in data if "mad_quality" in f]
    predictions = [f for f in data if "calibration" in f]
    lines: list[str] = []
    if replays:
        head = ["policy", "mean abs. diff. of average quality", "mean abs. diff. of 90% delay (s)"]
        rows = [[f"`{f['policy']}`", f"{f['mad_quality']:.3f}", f"{f['mad_delay90_s']:.1f}"]
                for f in replays]  # fmt: skip
        lines += ["### Simulator fidelity (live run replayed, in sample)", ""]
        lines += _table(head, rows)
    for f in predictions:
        cal = f["calibration"]
        lines += [
            "### Simulator fidelity out of sample",
            "",
            f"Calibrated on {', '.join(cal['runs'])}: fixed cost {cal['fixed_cost_s']:.3f} s, "
            f"one-core CPU s per iteration by algorithm/dataset; predicting the other seeds.",
            "",
        ]
        head = ["run", "policy", "seed", "quality live / sim", "90% delay live / sim (s)"]
        rows = [
            [Path(r["run_dir"]).name, f"`{r['policy']}`", str(r["seed"]),
             f"{r['live_mean_quality']:.3f} / {r['sim_mean_quality']:.3f}",
             f"{r['live_delay90_s']:.1f} / {r['sim_delay90_s']:.1f}"]
            for r in f["runs"]
        ]  # fmt: skip
        lines += _table(head, rows)
        err = f["errors"]
        lines += [
            f"Mean abs. error: quality {err['mean_quality']:.3f}, 90% delay "
            f"{_pct(err['delay90_rel']).lstrip('+')} relative; improvement over "
            f"`{f['baseline']}` quality {_pct(err['quality_improvement']).lstrip('+')}, "
            f"90% delay reduction {_pct(err['delay_reduction_90']).lstrip('+')} (points).",
            "",
        ]
    return lines


def _overhead_section(path: Path | None) -> list[str]:
    """Whole-epoch cost (slaq bench epoch) at each size, beside the per-job scipy reference."""
    if path is None:
        return []
    data = json.loads(Path(path).read_text())
    head = ["jobs", "cores", "predictor", "refit", "epoch p50 / p99 (ms)", "fit p50",
            "allocate p50", "scipy per job (ms)", "speed-up"]  # fmt: skip
    rows = [
        [str(r["jobs"]), str(r["cores"]), r["predictor"], r["refit"],
         f"{r['epoch_ms']['p50']:.1f} / {r['epoch_ms']['p99']:.1f}",
         f"{r['fit_ms']['p50']:.1f}", f"{r['allocate_ms']['p50']:.1f}",
         "n/a" if r.get("reference_epoch_ms") is None else f"{r['reference_epoch_ms']:.0f}",
         "n/a" if r.get("speedup_p50") is None else f"{r['speedup_p50']:.0f}x"]
        for r in data["results"]
    ]  # fmt: skip
    title = "### Scheduling overhead: one whole SLAQ epoch (every job got a new loss)"
    return [title, "", str(data.get("reference", {}).get("what", "")), ""] + _table(head, rows)


def _prediction_section(path: Path | None) -> list[str]:
    """Median and p90 relative error per curve group, per predictor, at the longest horizon
    the group's curves reach."""
    if path is None:
        return []
    data = json.loads(Path(path).read_text())
    predictors = list(data["all"])
    rows = []
    for group, preds in [*data["groups"].items(), ("all", data["all"])]:
        horizons = sorted(
            {int(h) for p in preds.values() for h, c in p.items() if c and c.get("curves")}
        )
        if not horizons:
            continue
        h = str(horizons[-1])
        cells = [preds.get(p, {}).get(h) for p in predictors]
        curves = next((c["curves"] for c in cells if c), 0)
        rows.append([group, h, str(curves)] + [
            "n/a" if not c else f"{c['median']:.4f} / {c['p90']:.4f}" for c in cells
        ])  # fmt: skip
    title = ("### Loss prediction: relative error k iterations ahead "
             "(median / p90; curves the fitter was not written for)")  # fmt: skip
    return [title, ""] + _table(["curves", "k", "n"] + predictors, rows)


def _decision_times(live_runs: list[dict[str, Any]]) -> list[str]:
    if not live_runs:
        return []
    times = ", ".join(
        f"`{p}` p50 {e.get('decision_ms_p50', float('nan')):.2f} / p99 "
        f"{e.get('decision_ms_p99', float('nan')):.2f}"
        for p, e in live_runs[0]["policies"].items()
    )
    return [f"Live decision time per epoch (ms, first seed): {times}", ""]


def render(
    *,
    live: Sequence[Path] = (),
    sim: Sequence[Path] = (),
    sweep: Path | None = None,
    premise: Path | None = None,
    scaling: Path | None = None,
    runs: Sequence[Path] = (),
    overhead: Path | None = None,
    fidelity: Sequence[Path] = (),
    prediction: Path | None = None,
    figures: Sequence[Path] = (),
    config_name: str = "",
) -> str:
    """The summary as Markdown."""
    lines = [
        f"# SLAQ reproduction: summary ({config_name})",
        "",
        "Generated by the pipeline (`snakemake --cores N`); every number below comes from "
        "the run that produced this file.",
        "",
    ]
    live_runs = _load(live)
    lines += _comparison_table(live_runs, "Live on Spark")
    lines += _decision_times(live_runs)
    lines += live_runs_section(runs)
    lines += _comparison_table(_load(sim), "Simulated at paper scale")
    lines += _sweep_section(sweep)
    lines += premise_section(premise)
    lines += scaling_section(scaling)
    lines += _fidelity_section(fidelity)
    lines += _overhead_section(overhead)
    lines += _prediction_section(prediction)
    if figures:
        lines += ["### Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    return "\n".join(lines)


def write_summary(out: Path, **kwargs: Any) -> None:
    """Render and write the summary atomically."""
    write_text_atomic(Path(out), render(**kwargs))
