"""Summary sections about the live machine: every live run, the premise and the scaling bench.

Kept apart from :mod:`slaq.summary` (the comparisons and the sweep) because these read run
directories and benchmark JSON rather than comparison metrics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PREMISE_TARGET = 2.5


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def _num(value: Any, fmt: str = ".2f") -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (format(value, fmt))
    )


def live_runs_section(run_dirs: Sequence[Path]) -> list[str]:
    """One row per live run: status, decisions, decision time, and the CPUs it kept busy."""
    if not run_dirs:
        return []
    rows = []
    for run_dir in sorted(run_dirs):
        meta = json.loads((Path(run_dir) / "run.json").read_text())
        util = meta.get("utilisation") or {}
        cpus = meta.get("physical_cores")
        busy = util.get("cpu_busy")
        share = None if busy is None or not cpus else busy / cpus
        rows.append(
            [Path(run_dir).name, f"`{meta['policy']}`", str(meta["seed"]), meta["exit_status"],
             str(meta.get("decisions", "n/a")), _num(meta.get("decision_ms_p50")),
             _num(meta.get("decision_ms_p99")), _num(meta.get("decision_cpu_ms_p99")),
             _num(busy), _num(util.get("machine_busy")),
             "n/a" if share is None else f"{share:.0%}",
             _num(meta.get("spark_fixed_cost_s"), ".3f")]
        )  # fmt: skip
    head = ["run", "policy", "seed", "status", "decisions", "decision p50 (ms)",
            "decision p99 (ms)", "its CPU p99 (ms)", "CPUs busy (run)", "CPUs busy (machine)",
            "of physical", "empty Spark job (s)"]  # fmt: skip
    note = (
        "Decision time is wall time on the driver; its CPU is the deciding thread's own CPU "
        "time (the policy's cost), the rest is waiting for the GIL behind the job threads. "
        "CPUs busy: time-weighted mean over the run of the CPUs used by its driver, executors "
        "and Python workers (utilisation.parquet has it per decision); the machine column "
        "counts every tenant, so the difference is other load on the host."
    )
    return ["### Live runs", "", note, ""] + _table(head, rows)


def premise_section(path: Path | None) -> list[str]:
    """The allocation premise: iterations at 6 vs 2 of 8 slots, per budget mode."""
    if path is None:
        return []
    data = json.loads(Path(path).read_text())
    modes = data.get("results") or {"run": data}
    lines = ["### Allocation premise", ""]
    for mode, res in modes.items():
        ratio = float(res["ratio"])
        verdict = "met" if ratio >= PREMISE_TARGET else "NOT met"
        jobs = res.get("jobs", {})
        counts = ", ".join(f"{j} {v['iterations']}" for j, v in jobs.items())
        lines.append(
            f"- {mode}: iterations {counts}, ratio {ratio:.2f}x (target >= {PREMISE_TARGET}x, "
            f"ideal {data.get('ideal_ratio', 3.0):g}x): {verdict}.{_premise_rates(jobs)}"
        )
    load = data.get("loadavg_before")
    if load:
        lines.append(f"- machine load average before the benchmark: {load[0]:.1f}")
    return lines + [""]


def _premise_rates(jobs: dict) -> str:
    """Steadier views of the premise than whole iterations counted in a short window.

    With iterations of ~2 CPU s the small job completes only a handful in the hold, so the
    count ratio moves in big steps; the ratio of median iteration times and of CPU shares
    use every second of the window.
    """
    big, small = jobs.get("big", {}), jobs.get("small", {})
    parts = []
    t_big, t_small = big.get("median_iteration_wall_s"), small.get("median_iteration_wall_s")
    if t_big and t_small and math.isfinite(t_big) and math.isfinite(t_small):
        parts.append(f"median iteration time small / big {t_small / t_big:.2f}x")
    c_big, c_small = big.get("cpu_share"), small.get("cpu_share")
    if c_big and c_small and math.isfinite(c_big) and math.isfinite(c_small):
        parts.append(f"CPU share big / small {c_big / c_small:.2f}x")
    return f" Also: {'; '.join(parts)}." if parts else ""


def scaling_section(path: Path | None) -> list[str]:
    """Speed and CPUs of one job against its slots, and the harness against bare Spark jobs."""
    if path is None:
        return []
    data = json.loads(Path(path).read_text())
    rows = []
    for work, res in data["results"].items():
        for slots, cell in sorted(res.get("single", {}).items(), key=lambda kv: int(kv[0])):
            job = next(iter(cell["jobs"].values()))
            rows.append(
                [work, _num(res.get("measured_cpu_s")), slots,
                 _num(job.get("spark_jobs_per_min"), ".1f"), _num(job.get("task_cpus")),
                 _num(cell.get("utilisation", {}).get("cpu_busy")),
                 _num((cell.get("loadavg_before") or [math.nan])[0], ".1f")]
            )  # fmt: skip
    head = ["CPU s / iteration (nominal)", "measured", "slots", "Spark jobs / min",
            "CPUs (tasks)", "CPUs busy (run)", "load before"]  # fmt: skip
    lines = [f"### Scaling of one job ({data.get('physical_cpus', '?')} physical CPUs)", ""]
    lines += _table(head, rows)
    overhead = data.get("overhead") or {}
    if overhead:
        ratios = ", ".join(
            f"{k} slots {v['ratio']:.2f}"
            for k, v in sorted(overhead.items(), key=lambda kv: int(kv[0]))
        )
        lines += [f"Harness period over a bare Spark job with the same task count: {ratios} "
                  "(target <= 1.2).", ""]  # fmt: skip
    return lines
