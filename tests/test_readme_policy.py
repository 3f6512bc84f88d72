"""The README's "Write your own policy" example runs as documented."""

import re
import sys
from pathlib import Path

import yaml

from slaq.cli import main
from slaq.traces import read_allocations, read_run

README = Path(__file__).resolve().parents[1] / "README.md"


def example_code() -> str:
    section = README.read_text().split("## Write your own policy", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_policy_runs_in_the_simulator(tmp_path, monkeypatch):
    (tmp_path / "mypolicies.py").write_text(example_code())
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mypolicies", None)
    workload = tmp_path / "w.yaml"
    jobs = [
        {
            "id": f"j{i}",
            "algorithm": "synthetic",
            "dataset": "synthetic",
            "arrival_s": 2.0 * i,
            "max_iter": 10,
            "tol": 0.0,
            "curve": {"family": "sublinear"},
        }
        for i in range(4)
    ]
    workload.write_text(yaml.safe_dump({"jobs": jobs}))
    out = tmp_path / "run"
    code = main(
        [
            "simulate",
            "--workload",
            str(workload),
            "--policy",
            "mypolicies:YoungestFirst",
            "--cores",
            "16",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    assert read_run(out)["policy"] == "youngest-first"
    alloc = read_allocations(out)
    assert alloc.groupby("epoch")["cores"].sum().max() <= 16
    # The youngest job holds the most cores when it arrives next to older ones.
    epoch = alloc[alloc.job_id == "j3"]["epoch"].min()
    at = alloc[alloc.epoch == epoch].set_index("job_id")["cores"]
    assert at["j3"] == at.max()
