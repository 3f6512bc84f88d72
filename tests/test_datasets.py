"""Datasets: registry validation, offline sources, conversion, seeded subsets, the cache
directory and the ``slaq datasets`` commands (downloads: tests/test_downloads.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from slaq import datasets as ds
from slaq.datasets import DatasetError, Registry
from tests.test_downloads import _libsvm_entry, _registry

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
OFFLINE = [
    "fashion-mnist",
    "fashion-mnist-test",
    "fashion-mnist-clusters",
    "flights",
    "diamonds",
    "default",
    "caravan",
    "digits",
    "breast-cancer",
    "wine",
    "diabetes",
]
# SHA-256 of the converted arrays of each CI subset (NAME-tiny): the same on every machine.
TINY_SHA256 = {
    "fashion-mnist": "3a363cb4743b7b3c382f7c26e43592896f44f00a03bda5f4333384e74d7068f4",
    "fashion-mnist-test": "a07835653c6aa9579b8099a57371d8c310a21ecb2ace508c731fa99826dad767",
    "fashion-mnist-clusters": "3a363cb4743b7b3c382f7c26e43592896f44f00a03bda5f4333384e74d7068f4",
    "flights": "76469d1f7f18bd20a779a076348924e5193c9b31b803c731c950e7789c9dca6b",
    "diamonds": "5a795a0b1c96df747a0514d9531094effa5b5d0dba79b60cc7a7946036b82930",
    "default": "a3fab7b85e680689e0fd7e2d9bede0458609b067e01d33d755c0627f31e0d475",
    "caravan": "fdf5802683ddd794f1c42647305d05c1bc82f9d5e0031577b364884806f8ee24",
    "digits": "80a961b339b74e3789e85f877ce26bcb861613cd368cf60ffdea193807f9692d",
    "breast-cancer": "411726dd15de5bd755d78534a0c7ca189b4c0d97c15e9ea85283be24464635e1",
    "wine": "a9f7999787ba41d8b0e53441dd9f454ac1e0a2887623c8b7131155afa3cc5471",
    "diabetes": "ec3274e5b8703d078a7f528b5972c58c2923d713f1f69f16cbe37ad85eba4d13",
}


def _needs_fashion(name: str) -> Any:
    return pytest.param(
        name,
        marks=pytest.mark.skipif(
            name.startswith("fashion") and not FASHION_DIR.is_dir(),
            reason=f"{FASHION_DIR} absent (sudo apt-get install dataset-fashion-mnist)",
        ),
    )


# ---------------------------------------------------------------------------------------------
# offline datasets


@pytest.fixture(scope="module")
def offline_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("offline-cache")


@pytest.mark.parametrize("name", [_needs_fashion(n) for n in OFFLINE])
def test_offline_dataset_loads_with_pinned_hash_and_shape(name, offline_cache):
    info = ds.default_registry().get(name)
    data = ds.load_dataset(name, cache_dir=offline_cache)
    assert data.X.shape == info.shape and data.y.shape == (info.shape[0],)
    assert data.X.dtype == np.float32 and np.isfinite(data.X).all()
    for role, spec in info.files.items():
        assert data.meta["files"][role]["sha256"] == spec.sha256
    if info.task == "regression":
        assert data.y.dtype == np.float32
        assert abs(float(data.y.mean())) < 1e-3 and abs(float(data.y.std()) - 1) < 1e-3
    elif info.n_classes is not None:
        assert data.y.dtype == np.int64
        assert set(np.unique(data.y)) == set(range(info.n_classes))
    assert data.meta["sha256"] == ds.digest_arrays(data.X, data.y)


def test_flights_counts_dropped_rows(offline_cache):
    data = ds.load_dataset("flights", cache_dir=offline_cache, max_rows=1000, seed=3)
    assert data.meta["raw_rows"] == 336_776 and data.meta["dropped_rows"] == 9_430
    assert data.X.shape == (1000, 27) and data.meta["subsample"] == {"rows": 1000, "seed": 3}
    names = data.meta["features"]["names"]
    assert "carrier=UA" in names and "origin=JFK" in names and "arr_delay" not in names


@pytest.mark.parametrize("name", [_needs_fashion(n) for n in OFFLINE])
def test_tiny_subsets_are_small_and_identical_everywhere(name, offline_cache):
    directory = ds.prepare(f"{name}-tiny", cache_dir=offline_cache)
    size = sum(p.stat().st_size for p in directory.iterdir())
    assert size < 2_000_000
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["sha256"] == TINY_SHA256[name]


# ---------------------------------------------------------------------------------------------
# subsampling, cache, registry, config, CLI


def test_subsample_is_seeded_and_stable():
    np.testing.assert_array_equal(ds.subsample_indices(10, 4, seed=0), [1, 2, 3, 8])
    idx = ds.subsample_indices(100_000, 1000, seed=42)
    assert hashlib.sha256(idx.astype("<i8").tobytes()).hexdigest() == (
        "2f512b2ec35878848730cb7729f6847ee892015d2375d0bbb52de5c8863127ab"
    )
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    Xs, ys = ds.subsample(X, y, 4, seed=7)
    np.testing.assert_array_equal(Xs[:, 0] // 2, ys)
    assert list(ys) == sorted(ys) and len(set(ys)) == 4
    np.testing.assert_array_equal(ds.subsample(X, y, 4, seed=7)[1], ys)
    assert ds.subsample(X, y, 50, seed=0)[0] is X


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SLAQ_DATA_DIR", str(tmp_path / "env"))
    assert ds.prepare("wine") == tmp_path / "env" / "wine"
    assert ds.prepare("wine", cache_dir=tmp_path / "arg") == tmp_path / "arg" / "wine"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "ranking"}, r"dataset 'toy': field 'task'"),
        ({"files": {"data": {"sources": []}}}, r"dataset 'toy': field 'files.data.sources'"),
        ({"shape": [10]}, r"dataset 'toy': field 'shape'"),
        ({"format": "idx"}, r"dataset 'toy': field 'files': format 'idx' needs files"),
        ({"n_classes": 3}, r"dataset 'toy': field 'n_classes'"),
    ],
)
def test_registry_validation_names_dataset_and_field(tmp_path, change, message):
    entry = {**_libsvm_entry("http://127.0.0.1:1/x", (4, 2)), **change}
    with pytest.raises(DatasetError, match=message):
        _registry(tmp_path, {"toy": entry})


def test_shipped_registry_is_valid_and_lookup_is_lenient():
    registry = Registry.load()
    assert {"fashion-mnist", "a9a", "epsilon", "yearpredictionmsd"} <= set(registry.names())
    assert registry.get("YearPredictionMSD").name == "yearpredictionmsd"
    assert registry.get("covtype.binary").name == "covtype-binary"
    assert registry.get("breast_cancer").name == "breast-cancer"
    tiny = registry.get("epsilon-tiny")
    assert tiny.shape == (200, 2000) and tiny.tiny_of == "epsilon"
    with pytest.raises(
        ValueError, match="unknown dataset 'mnist9m'.*known datasets: fashion-mnist"
    ):
        registry.get("mnist9m")
    for info in ds.list_datasets():
        assert info.sources or info.derive
        if info.format != "derived" and info.offline:
            assert all(f.sha256 for f in info.files.values()), info.name


def test_datasets_for_config_is_lenient():
    config = {
        "datasets": ["wine"],
        "workload": {"templates": [{"dataset": "digits"}, {"dataset": "wine"}, {"x": 1}]},
        "live": {"workload": {"templates": [{"algorithm": "svm", "dataset": "flights"}]}},
        "simulation": {"templates": [{"dataset": "synthetic", "curve": {}}]},
    }
    assert ds.datasets_for_config(config) == ["wine", "digits", "flights"]
    assert ds.datasets_for_config({"datasets": "a9a", "live": None}) == ["a9a"]
    assert ds.datasets_for_config({}) == []


def test_cli_list_and_fetch(tmp_path, capsys):
    from slaq.cli import main

    assert main(["datasets", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist" in out and "60,000 x 784" in out and "epsilon" in out
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"live": {"workload": {"templates": [{"dataset": "diabetes"}]}}})
    )
    manifest = tmp_path / "manifest.json"
    args = ["datasets", "fetch", "wine", "--config", str(config), "--data-dir", str(tmp_path / "c")]
    assert main([*args, "--manifest", str(manifest), "--offline"]) == 0
    entries = json.loads(manifest.read_text())["datasets"]
    assert sorted(entries) == ["diabetes", "wine"] and entries["wine"]["shape"] == [178, 13]
    assert main(["datasets", "fetch", "no-such-set", "--data-dir", str(tmp_path / "c")]) == 2


def test_check_dataset_names_is_one_line_listing_known_names():
    ds.check_dataset_names(["wine", "YearPredictionMSD", "epsilon-tiny", "breast_cancer"])
    with pytest.raises(DatasetError) as err:
        ds.check_dataset_names(["wine", "mnist9m", "nope"])
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("unknown datasets 'mnist9m' (did you mean mnist8m?), 'nope';")
    assert "known datasets: fashion-mnist" in msg and "wine" in msg.split(";")[1]
    # The simulator's pseudo-dataset only where it is meant.
    with pytest.raises(DatasetError, match="unknown dataset 'synthetic'"):
        ds.check_dataset_names(["synthetic"])
    ds.check_dataset_names(["synthetic", "digits"], allow_synthetic=True)
    with pytest.raises(DatasetError, match="not a name"):
        ds.check_dataset_names([""])


def test_cli_fetch_rejects_unknown_names_before_any_work(tmp_path):
    from slaq.cli import main

    cache = tmp_path / "c"
    assert main(["datasets", "fetch", "wine", "no-such-set", "--data-dir", str(cache)]) == 2
    assert not cache.exists()  # wine was not converted before the bad name was noticed
