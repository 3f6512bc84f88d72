"""Every pipeline config is complete on its own: nothing is inherited from config/config.yaml.

Snakemake deep-merges a `--configfile` over the Snakefile's `configfile:` (dicts merge key by
key, anything else is replaced). The Snakefile reads config/config.yaml only when no
--configfile is given, and these tests make sure that even a merge would change nothing: every
leaf of smoke.yaml and paper.yaml merged over config.yaml comes from the file itself.
"""

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from snakemake.utils import update_config

CONFIG = Path(__file__).resolve().parents[1] / "config"
PIPELINE_CONFIGS = ["config.yaml", "smoke.yaml", "paper.yaml"]


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIG / name).read_text())


def leaves(tree: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Paths of the leaves of a config as Snakemake merges it: dicts are walked key by key,
    lists and scalars are replaced whole, so they are leaves."""
    if isinstance(tree, Mapping) and tree:
        for key, value in tree.items():
            yield from leaves(value, (*prefix, str(key)))
    else:
        yield prefix


def snakemake_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """The merge Snakemake applies to a --configfile over the workflow's configfile."""
    merged = yaml.safe_load(yaml.safe_dump(base))
    update_config(merged, over)
    return merged


def inherited(name: str) -> list[str]:
    own = set(leaves(load(name)))
    merged = snakemake_merge(load("config.yaml"), load(name))
    return sorted(".".join(path) for path in leaves(merged) if path not in own)


@pytest.mark.parametrize("name", ["smoke.yaml", "paper.yaml"])
def test_no_leaf_is_inherited_from_the_default(name):
    assert inherited(name) == [], f"{name} inherits these keys from config.yaml"


def test_inheritance_check_catches_a_missing_key(monkeypatch):
    """The check itself: a file without a key the default sets is caught."""
    partial = load("smoke.yaml")
    del partial["live"]["epoch_s"]
    real_load = load

    def fake(name: str) -> dict[str, Any]:
        return partial if name == "smoke.yaml" else real_load(name)

    monkeypatch.setitem(globals(), "load", fake)
    assert inherited("smoke.yaml") == ["live.epoch_s"]


def test_schema_sets_no_defaults():
    """Defaults would fill in keys a file forgot, which is inheritance by another name."""
    text = (CONFIG / "schema.yaml").read_text()
    assert "default:" not in text


@pytest.mark.parametrize("name", PIPELINE_CONFIGS)
def test_each_config_validates_on_its_own(name):
    schema = yaml.safe_load((CONFIG / "schema.yaml").read_text())
    jsonschema.validate(load(name), schema)


@pytest.mark.parametrize("name", PIPELINE_CONFIGS)
def test_one_set_of_policy_parameters(name):
    """Live runs, replays and the sweep read the same `policies:` section; no per-mode args."""
    cfg = load(name)
    assert "policy_args" not in cfg
    assert "policy_args" not in cfg["live"]
    assert {"slaq", "slaq-robust", "fair"} <= set(cfg["policies"])
    assert cfg["baseline"] in cfg["policies"]


@pytest.mark.parametrize("name", PIPELINE_CONFIGS)
def test_outputs_under_results(name):
    cfg = load(name)
    results = Path(cfg["results_dir"])
    assert results == Path("results") or Path("results") in results.parents
    assert results in Path(cfg["figures_dir"]).parents


def test_sweep_sizes():
    """Issue 15: at least 4 loads from under- to over-subscribed and 5 seeds by default."""
    for name in ("config.yaml", "paper.yaml"):
        sweep = load(name)["sweep"]
        assert len(sweep["loads"]) >= 4 and min(sweep["loads"]) < 1 < max(sweep["loads"])
        assert len(sweep["seeds"]) >= 5
        assert sweep["mixes"] == ["smooth", "mixed"]
    assert len(load("config.yaml")["seeds"]) >= 3
