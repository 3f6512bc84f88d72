"""The summary's tables: columns, CI wording, regime, ablation and premise."""

import json

import pytest

from slaq.stats import mean_ci
from slaq.summary import REGIME_COLUMNS, SEED_COLUMNS, SWEEP_COLUMNS, render


def _policy(q, delay90, impr, red):
    return {
        "mean_quality": q,
        "mean_delay_s": {"80": delay90, "90": delay90, "95": delay90, "99": delay90},
        "quality_improvement": impr,
        "total_loss_reduction": red,
        "delay_reduction": {t: red for t in ("80", "90", "95", "99")},
        "share_sooner": {"90": 0.6},
    }


def _compare(impr):
    base = _policy(0.5, 10.0, 0.0, 0.0)
    return {
        "baseline": "fair",
        "targets": [80, 90, 95, 99],
        "policies": {"fair": base, "slaq": _policy(0.5 * (1 - impr), 9.0, impr, 0.1)},
    }


def _header(text, first):
    line = next(x for x in text.splitlines() if x.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_live_table_columns_and_noise_wording(tmp_path):
    paths = []
    for seed, impr in enumerate((-0.02, 0.087, 0.104)):  # issue 15's three live seeds
        paths.append(tmp_path / f"live-{seed}.json")
        paths[-1].write_text(json.dumps(_compare(impr)))
    text = render(live=paths, config_name="t")
    assert _header(text, "policy") == SEED_COLUMNS
    row = next(x for x in text.splitlines() if x.startswith("| `slaq` |"))
    assert "+5.7% [" in row and "within noise" in row  # mean of the three, CI crosses 0
    assert "-2.0% .. +10.4%" in row


def _cell(policy, load, mean):
    stat = mean_ci([mean - 0.01, mean, mean + 0.01])
    names = ["quality_improvement", "total_loss_reduction", "share_sooner_90"]
    names += [f"delay_reduction_{t}" for t in (80, 90, 95, 99)]
    return {"mix": "smooth", "load": load, "policy": policy, "n_seeds": 3,
            "metrics": {m: stat for m in names}}  # fmt: skip


def test_sweep_regime_ablation_and_premise(tmp_path):
    regime = {"median_epochs": mean_ci([60, 70, 80]), "mean_active_jobs": mean_ci([11, 12, 13])}
    data = {
        "baseline": "fair",
        "cells": [_cell("slaq", 0.8, 0.3), _cell("slaq[min_cores=1]", 0.8, -0.2)],
        "regime": [{"mix": "smooth", "load": 0.8, "n_seeds": 3, **regime,
                    "offered_load": mean_ci([0.8] * 3), "paper_regime_all_seeds": True}],
        "up_to": {"smooth": {"slaq": {"quality_improvement": {"load": 0.8, "mean": 0.3},
                                      "delay_reduction_90": {"load": 0.8, "mean": 0.3}}}},
        "loses": {"smooth": {"slaq[min_cores=1]": [
            {"load": 0.8, "metric": "quality_improvement", "mean": -0.2, "ci_high": -0.17}]}},
        "settings": [],
    }  # fmt: skip
    (tmp_path / "sweep.json").write_text(json.dumps(data))
    (tmp_path / "premise.json").write_text(json.dumps({"ratio": 2.61}))
    text = render(sweep=tmp_path / "sweep.json", premise=tmp_path / "premise.json")
    assert _header(text, "load") == SWEEP_COLUMNS
    assert _header(text, "mix")[: len(REGIME_COLUMNS)] == REGIME_COLUMNS
    assert "| smooth | 0.8 | 3 | 70 (60-80) | 12.0 (11.0-13.0) | 0.80 (0.80-0.80) | yes |" in text
    assert "up to +30.0% quality (load 0.8)" in text
    assert "`slaq[min_cores=1]` loses (CI below zero): quality_improvement at load 0.8" in text
    assert "#### min_cores ablation" in text
    assert "2.61x (target >= 2.5x, ideal 3x): met" in text
    assert "peak" not in text


@pytest.mark.parametrize("ratio,verdict", [(2.4, "NOT met"), (2.5, "met")])
def test_premise_verdict(tmp_path, ratio, verdict):
    (tmp_path / "p.json").write_text(json.dumps({"ratio": ratio}))
    assert f"ideal 3x): {verdict}." in render(premise=tmp_path / "p.json")


def test_premise_adds_time_and_cpu_ratios_when_both_jobs_ran(tmp_path):
    jobs = {
        "big": {"iterations": 16, "median_iteration_wall_s": 1.5, "cpu_share": 1.2},
        "small": {"iterations": 4, "median_iteration_wall_s": 4.2, "cpu_share": 0.4},
    }
    quiet = {"big": {"iterations": 3, "median_iteration_wall_s": 1.0}, "small": {"iterations": 0}}
    data = {
        "results": {"budget": {"ratio": 4.0, "jobs": jobs}, "idle": {"ratio": 0, "jobs": quiet}}
    }
    (tmp_path / "p.json").write_text(json.dumps(data))
    text = render(premise=tmp_path / "p.json")
    # 4.2 / 1.5 = 2.8 and 1.2 / 0.4 = 3.0, by hand.
    assert "median iteration time small / big 2.80x; CPU share big / small 3.00x." in text
    idle = next(line for line in text.splitlines() if line.startswith("- idle:"))
    assert "Also" not in idle  # no time for a job that never finished an iteration


def test_live_runs_table_separates_decision_wall_and_cpu_time(tmp_path):
    from slaq.summary_live import live_runs_section

    run = tmp_path / "slaq-0"
    run.mkdir()
    meta = {"policy": "slaq", "seed": 0, "exit_status": "ok", "decisions": 12,
            "decision_ms_p50": 4.0, "decision_ms_p99": 118.0, "decision_cpu_ms_p99": 9.5,
            "physical_cores": 2, "utilisation": {"cpu_busy": 1.5, "machine_busy": 1.9}}  # fmt: skip
    (run / "run.json").write_text(json.dumps(meta))
    lines = live_runs_section([run])
    head = [c.strip() for c in next(x for x in lines if x.startswith("| run")).split("|")[1:-1]]
    row = [c.strip() for c in next(x for x in lines if "slaq-0" in x).split("|")[1:-1]]
    cells = dict(zip(head, row, strict=True))
    assert cells["decision p99 (ms)"].startswith("118")
    assert cells["its CPU p99 (ms)"].startswith("9.5")
    assert cells["of physical"] == "75%"
