"""Every algorithm on every dataset of config/config.yaml: one report per accepted step, equal to
the objective of the model held after it (re-derived in plain numpy), and non-increasing."""

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from threadpoolctl import threadpool_limits

from slaq.algorithms import make_trainer
from slaq.blocks import LocalContext, write_blocks
from slaq.datasets import load_dataset
from tests.trainer_oracles import as_seen, objective

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
TEMPLATES = CONFIG["live"]["workload"]["templates"]
DATA_DIR = ROOT / CONFIG["data_dir"]
ROWS = 1200  # subsampled so the whole property test stays within seconds per template
ITERATIONS = 12
# Setup call(s), then iterations of one or more map_reduce calls and exactly one report.
PROTOCOL = re.compile(r"^(map_reduce,)*(map_reduce,)+report,((map_reduce,)+report,)*$")


class HoldingContext(LocalContext):
    """LocalContext that keeps a copy of the trainer's held model at every report."""

    trainer = None

    def report(self, objective: float) -> None:
        self.held = getattr(self, "held", [])
        self.held.append(copy.deepcopy(self.trainer.result))
        super().report(objective)


def _load(template):
    data = load_dataset(template["dataset"], cache_dir=DATA_DIR, max_rows=ROWS, seed=0)
    X, y = as_seen(data.X), np.asarray(data.y)
    return X, y, data


def _n_outputs(template, y):
    if template["algorithm"] in ("kmeans", "gmm"):
        return int(template["params"]["k"])
    if template["algorithm"] == "linreg":
        return 1
    return int(y.max()) + 1


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield


@pytest.mark.parametrize(
    "template", TEMPLATES, ids=[f"{t['algorithm']}-{t['dataset']}" for t in TEMPLATES]
)
def test_reported_loss_is_the_held_models_objective(tmp_path, template):
    X, y, data = _load(template)
    params = {k: v for k, v in template["params"].items() if k != "rows"}
    k = _n_outputs(template, y)
    bs = write_blocks(X, None if data.task == "clustering" else y, tmp_path / "b", 12)
    ctx = HoldingContext(bs, max_iter=ITERATIONS)
    ctx.trainer = make_trainer(template["algorithm"], X.shape[1], k, params, seed=0)
    ctx.trainer.run(ctx)
    losses = np.array(ctx.objectives)
    assert PROTOCOL.match("".join(c + "," for c in ctx.calls)), ctx.calls
    assert len(ctx.cpu_s) == len(losses) and sum(ctx.cpu_s) > 0
    assert len(losses) == ITERATIONS or ctx.stop_reason is None
    independent = [objective(template["algorithm"], X, y, h, params) for h in ctx.held]
    np.testing.assert_allclose(losses, independent, rtol=1e-9)
    # Every trainer accepts only non-increasing steps (Armijo for (L-)BFGS, EM and Lloyd).
    assert np.all(np.diff(losses) <= 1e-12 * np.abs(losses[:-1]))
    assert losses[-1] < losses[0]
