"""Curve library: the CLI writes a long-format Parquet the reader turns into records."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from slaq.cli import main
from slaq.curves import CURVE_SCHEMA, load_curve_library, template_id

DATA_DIR = Path(__file__).resolve().parents[1] / "datasets" / "cache"
TEMPLATES = [
    {"algorithm": "svm", "dataset": "caravan", "max_iter": 3, "tol": 0.0, "params": {"reg": 1e-3}},
    # tol 0.5 would stop a job after 3 slow iterations; the library must still record min_iter.
    {
        "algorithm": "logreg",
        "dataset": "digits",
        "max_iter": 3,
        "tol": 0.5,
        "params": {"reg": 1e-2},
    },
]


def test_build_and_load(tmp_path):
    spec = tmp_path / "templates.yaml"
    spec.write_text(yaml.safe_dump({"templates": TEMPLATES}))
    out = tmp_path / "curves" / "lib.parquet"
    args = ["curves", "build", "--templates", str(spec), "--data-dir", str(DATA_DIR)]
    assert main([*args, "--out", str(out), "--min-iterations", "8", "--max-iterations", "9"]) == 0
    table = pq.read_table(out)
    assert table.schema.equals(CURVE_SCHEMA)
    records = load_curve_library(out)
    assert [r.template_id for r in records] == [template_id(t) for t in TEMPLATES]
    for r in records:
        assert 8 <= r.losses.size <= 9  # at least min_iterations despite max_iter and tol
        assert not r.losses.flags.writeable
        assert np.all(np.diff(r.losses) <= 0) and r.cpu_s_per_iter > 0
        assert len(r.data_hash) == 16
    frame = table.to_pandas()
    assert (
        frame.groupby("template_id")
        .iteration.apply(lambda s: list(s) == list(range(1, len(s) + 1)))
        .all()
    )


def test_parallel_build_records_the_same_curves_in_template_order(tmp_path):
    spec = tmp_path / "templates.yaml"
    # A repeated template is recorded once, where it first appears.
    spec.write_text(yaml.safe_dump({"templates": [*TEMPLATES, TEMPLATES[0]]}))
    args = ["curves", "build", "--templates", str(spec), "--data-dir", str(DATA_DIR)]
    args += ["--min-iterations", "5", "--max-iterations", "5"]
    serial, parallel = tmp_path / "serial.parquet", tmp_path / "parallel.parquet"
    assert main([*args, "--out", str(serial)]) == 0
    assert main([*args, "--processes", "2", "--out", str(parallel)]) == 0
    one, two = load_curve_library(serial), load_curve_library(parallel)
    assert [r.template_id for r in two] == [template_id(t) for t in TEMPLATES]
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a.losses, b.losses)  # same trainers, same data, same seed
        assert a.data_hash == b.data_hash


def test_bad_templates_file(tmp_path):
    spec = tmp_path / "t.yaml"
    spec.write_text(yaml.safe_dump({"templates": [{"algorithm": "svm"}]}))
    with pytest.raises(ValueError, match=r"templates\[0\] lacks dataset"):
        from slaq.curves_cli import read_templates

        read_templates(spec)
