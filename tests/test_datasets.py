"""Datasets: registry validation, offline sources, the download path (local HTTP server),
conversion, atomic caching, seeded subsets and the ``slaq datasets`` commands."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import http.server
import json
import shutil
import socket
import struct
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import yaml

import slaq.datasets.cache
from slaq import datasets as ds
from slaq.datasets import DatasetError, Registry
from slaq.datasets.lock import Lock

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
# fixtures


class _Server:
    """A local HTTP server: routes map a path to its body; some responses are truncated, and
    ``first`` lists bodies served before the route's (a publisher's wrong first copy)."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.first: dict[str, list[bytes]] = {}  # path -> bodies served (whole) before routes
        self.truncate: dict[str, int] = {}  # path -> how many more responses to cut short
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.hits[self.path] += 1
                queued = server.first.get(self.path)
                body = queued.pop(0) if queued else server.routes.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.truncate.get(self.path, 0) > 0:
                    server.truncate[self.path] -= 1
                    # Promise the whole body, send half, close (HTTP/1.0 closes after this).
                    self.wfile.write(body[: len(body) // 2])
                    return
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def server():
    srv = _Server()
    srv.thread.start()  # the socket already listens, so no wait is needed before requests
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _libsvm_data(
    rows: int = 40, cols: int = 6, seed: int = 1
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A LIBSVM text file written by hand from a known dense matrix (values exact in text)."""
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(rows, cols)), 3) * (rng.random((rows, cols)) < 0.5)
    X[:, -1] = 0.0  # an all-zero last column: n_features must come from the registry
    labels = np.where(rng.random(rows) < 0.4, 1, -1)
    lines = []
    for label, row in zip(labels, X, strict=True):
        pairs = " ".join(f"{j + 1}:{v!r}" for j, v in enumerate(row.tolist()) if v != 0)
        lines.append(f"{label:+d} {pairs}".rstrip())
    return ("\n".join(lines) + "\n").encode(), X, labels


def _registry(tmp_path: Path, datasets: dict[str, Any]) -> Registry:
    return Registry.from_dict(
        {"version": 1, "datasets": datasets}, where="test registry", path=tmp_path / "r.yaml"
    )


def _libsvm_entry(url: str, shape: tuple[int, int], hash_: str | None = None, **features: Any):
    source: dict[str, Any] = {"url": url}
    if hash_ is not None:
        source["hash"] = hash_
    return {
        "task": "binary",
        "description": "a test set",
        "format": "libsvm",
        "shape": list(shape),
        "n_classes": 2,
        "features": {"dense": True, **features},
        "files": {"data": {"sources": [source]}},
    }


@pytest.fixture
def served_libsvm(server, tmp_path):
    """A bz2 LIBSVM file on the local server and a registry entry 'toy' pointing at it."""
    text, X, labels = _libsvm_data()
    blob = bz2.compress(text)
    server.routes["/data/toy.bz2"] = blob
    registry = _registry(tmp_path, {"toy": _libsvm_entry(server.url("/data/toy.bz2"), X.shape)})
    return registry, blob, X, labels


def _leftovers(cache: Path) -> list[str]:
    """Every file under the cache (downloads, temporaries, converted arrays)."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# downloads


def test_download_parse_cache_and_lock(served_libsvm, server, tmp_path):
    registry, blob, X, labels = served_libsvm
    cache = tmp_path / "cache"
    data = ds.load_dataset("toy", cache_dir=cache, allow_download=True, registry=registry)
    # The parser path agrees with the matrix the file was written from.
    np.testing.assert_array_equal(data.X, X.astype(np.float32))
    np.testing.assert_array_equal(data.y, (labels == 1).astype(np.int64))
    assert data.X.dtype == np.float32 and data.y.dtype == np.int64
    assert data.meta["shape"] == [40, 6]
    # First download of an unpinned file: once it validated, its SHA-256 goes into the data
    # directory's lock file.
    lock = json.loads((cache / "lock.json").read_text())["files"]
    assert lock[server.url("/data/toy.bz2")]["sha256"] == hashlib.sha256(blob).hexdigest()
    # The compressed download stays; its decompressed copy was only a conversion input.
    assert _leftovers(cache) == [
        "downloads/toy/toy.bz2",
        "lock.json",
        "toy/X.npy",
        "toy/meta.json",
        "toy/y.npy",
    ]
    ds.load_dataset("toy", cache_dir=cache, allow_download=True, registry=registry)
    assert server.hits["/data/toy.bz2"] == 1  # served from the cache the second time
    # A damaged local download fails the locked hash and is fetched again.
    (cache / "downloads/toy/toy.bz2").write_bytes(b"damaged")
    shutil.rmtree(cache / "toy")
    again = ds.load_dataset("toy", cache_dir=cache, allow_download=True, registry=registry)
    assert server.hits["/data/toy.bz2"] == 2
    np.testing.assert_array_equal(again.X, data.X)


def test_locked_hash_is_verified_on_later_downloads(served_libsvm, server, tmp_path):
    registry, blob, _, _ = served_libsvm
    cache = tmp_path / "c"
    ds.prepare("toy", cache_dir=cache, allow_download=True, registry=registry)
    shutil.rmtree(cache / "toy")
    shutil.rmtree(cache / "downloads")
    # The server now publishes different bytes under the same URL.
    other = bz2.compress(_libsvm_data(seed=2)[0])
    server.routes["/data/toy.bz2"] = other
    with pytest.raises(DatasetError) as err:
        ds.prepare("toy", cache_dir=cache, allow_download=True, registry=registry, retries=0)
    msg = str(err.value)
    for part in ("toy", server.url("/data/toy.bz2"), hashlib.sha256(blob).hexdigest()):
        assert part in msg
    assert hashlib.sha256(other).hexdigest() in msg and "lock file" in msg
    assert _leftovers(cache) == ["lock.json"]


def test_hash_mismatch_is_rejected_and_not_cached(server, tmp_path):
    text, X, _ = _libsvm_data()
    blob = bz2.compress(text)
    server.routes["/toy.bz2"] = blob
    wrong = "0" * 64
    registry = _registry(
        tmp_path, {"toy": _libsvm_entry(server.url("/toy.bz2"), X.shape, f"sha256:{wrong}")}
    )
    # A lock entry with the right hash must not override the registry's (wrong) one.
    cache = tmp_path / "cache"
    Lock.in_data_dir(cache).record(
        server.url("/toy.bz2"), hashlib.sha256(blob).hexdigest(), dataset="toy", size=1
    )
    with pytest.raises(DatasetError) as err:
        ds.prepare("toy", cache_dir=cache, allow_download=True, registry=registry, retries=0)
    msg = str(err.value)
    assert "toy" in msg and server.url("/toy.bz2") in msg
    assert wrong in msg and hashlib.sha256(blob).hexdigest() in msg and "not cached" in msg
    assert _leftovers(cache) == ["lock.json"]


def test_registry_hash_wins_over_lock(server, tmp_path):
    text, X, _ = _libsvm_data()
    blob = bz2.compress(text)
    server.routes["/toy.bz2"] = blob
    good = f"sha256:{hashlib.sha256(blob).hexdigest()}"
    registry = _registry(tmp_path, {"toy": _libsvm_entry(server.url("/toy.bz2"), X.shape, good)})
    Lock.in_data_dir(tmp_path / "c").record(server.url("/toy.bz2"), "f" * 64, dataset="toy", size=1)
    data = ds.load_dataset("toy", cache_dir=tmp_path / "c", allow_download=True, registry=registry)
    assert data.meta["files"]["data"]["published_hash"] == good


def test_truncated_download_is_retried(served_libsvm, server, tmp_path):
    registry, _, X, _ = served_libsvm
    server.truncate["/data/toy.bz2"] = 1
    directory = ds.prepare(
        "toy", cache_dir=tmp_path / "c", allow_download=True, registry=registry, retries=1
    )
    assert server.hits["/data/toy.bz2"] == 2
    np.testing.assert_array_equal(np.load(directory / "X.npy"), X.astype(np.float32))


def test_truncated_download_leaves_nothing_behind(served_libsvm, server, tmp_path):
    registry, _, _, _ = served_libsvm
    server.truncate["/data/toy.bz2"] = 10
    cache = tmp_path / "c"
    with pytest.raises(DatasetError, match="toy.*interrupted 2 times"):
        ds.prepare("toy", cache_dir=cache, allow_download=True, registry=registry, retries=1)
    assert server.hits["/data/toy.bz2"] == 2
    assert _leftovers(cache) == []


def test_http_404_names_dataset_and_url(server, tmp_path):
    url = server.url("/missing.bz2")
    registry = _registry(tmp_path, {"toy": _libsvm_entry(url, (40, 6))})
    with pytest.raises(DatasetError) as err:
        ds.prepare(
            "toy", cache_dir=tmp_path / "c", allow_download=True, registry=registry, retries=0
        )
    assert "toy" in str(err.value) and url in str(err.value) and "404" in str(err.value)


def test_no_network_suggests_offline_default(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/toy.bz2"
    registry = _registry(tmp_path, {"toy": _libsvm_entry(url, (40, 6))})
    with pytest.raises(DatasetError) as err:
        ds.prepare(
            "toy", cache_dir=tmp_path / "c", allow_download=True, registry=registry, retries=0
        )
    msg = str(err.value)
    assert "toy" in msg and url in msg
    assert "snakemake --cores N" in msg and "config/config.yaml" in msg
    assert "slaq datasets list" in msg
    assert _leftovers(tmp_path / "c") == []


def test_downloads_are_off_unless_asked(served_libsvm, server, tmp_path):
    registry, _, _, _ = served_libsvm
    with pytest.raises(DatasetError, match="slaq datasets fetch toy"):
        ds.load_dataset("toy", cache_dir=tmp_path / "c", registry=registry)
    assert server.hits["/data/toy.bz2"] == 0


@pytest.mark.parametrize(("dense", "standardize"), [(False, False), (True, True)])
def test_libsvm_sparse_and_standardized(server, tmp_path, dense, standardize):
    text, X, labels = _libsvm_data(rows=30, cols=5, seed=3)
    server.routes["/t.bz2"] = bz2.compress(text)
    entry = _libsvm_entry(server.url("/t.bz2"), X.shape, dense=dense, standardize=standardize)
    registry = _registry(tmp_path, {"t": entry})
    data = ds.load_dataset("t", cache_dir=tmp_path / "c", allow_download=True, registry=registry)
    if dense:
        std = X.std(axis=0)
        expected = (X - X.mean(axis=0)) / np.where(std == 0, 1.0, std)
        np.testing.assert_allclose(data.X, expected, rtol=1e-6, atol=1e-6)
    else:
        assert sp.isspmatrix_csr(data.X)
        np.testing.assert_array_equal(data.X.toarray(), X.astype(np.float32))
    np.testing.assert_array_equal(data.y, labels == 1)


def _idx(array: np.ndarray) -> bytes:
    return (
        bytes([0, 0, 0x08, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.tobytes()
    )


def test_corrupt_system_file_falls_back_to_next_source(server, tmp_path):
    images = np.arange(5 * 2 * 2, dtype=np.uint8).reshape(5, 2, 2) * 10
    labels = np.array([0, 1, 2, 1, 0], dtype=np.uint8)
    corrupt = tmp_path / "images.gz"
    corrupt.write_bytes(gzip.compress(_idx(images + 1)))
    server.routes["/images.gz"] = gzip.compress(_idx(images))
    label_file = tmp_path / "labels.gz"
    label_file.write_bytes(gzip.compress(_idx(labels)))
    entry = {
        "task": "multiclass",
        "description": "tiny IDX set",
        "format": "idx",
        "shape": [5, 4],
        "n_classes": 3,
        "features": {"scale": 255},
        "files": {
            "images": {
                "sha256": hashlib.sha256(_idx(images)).hexdigest(),
                "sources": [{"system": str(corrupt)}, {"url": server.url("/images.gz")}],
            },
            "labels": {
                "sha256": hashlib.sha256(_idx(labels)).hexdigest(),
                "sources": [{"system": str(label_file)}],
            },
        },
    }
    registry = _registry(tmp_path, {"idx": entry})
    # Offline, the corrupt file is refused and nothing else may be tried.
    with pytest.raises(DatasetError, match="does not match its pinned hash"):
        ds.load_dataset("idx", cache_dir=tmp_path / "c", registry=registry)
    data = ds.load_dataset("idx", cache_dir=tmp_path / "c", registry=registry, allow_download=True)
    assert data.meta["files"]["images"]["source"] == f"url:{server.url('/images.gz')}"
    np.testing.assert_array_equal(data.X, images.reshape(5, 4).astype(np.float32) / 255)
    np.testing.assert_array_equal(data.y, labels)


def test_parse_idx_rejects_bad_input():
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(ds.parse_idx(_idx(array)), array)
    with pytest.raises(DatasetError, match="truncated"):
        ds.parse_idx(_idx(array)[:-1])
    with pytest.raises(DatasetError, match="magic"):
        ds.parse_idx(b"\x01\x02\x03\x04")


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


def test_failed_write_leaves_no_cache(served_libsvm, tmp_path, monkeypatch):
    registry, _, _, _ = served_libsvm
    cache = tmp_path / "c"

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(slaq.datasets.cache.np, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        ds.prepare("toy", cache_dir=cache, allow_download=True, registry=registry)
    monkeypatch.undo()
    # The download validated (parsed, right shape) before the write failed: it is pinned.
    assert sorted(p.name for p in cache.iterdir()) == ["downloads", "lock.json"]
    # A cache made from a different registry entry is rebuilt, not trusted.
    ds.prepare("toy", cache_dir=cache, allow_download=True, registry=registry)
    meta = json.loads((cache / "toy" / "meta.json").read_text())
    meta["entry_digest"] = "stale"
    (cache / "toy" / "meta.json").write_text(json.dumps(meta))
    ds.prepare("toy", cache_dir=cache, allow_download=True, registry=registry)
    assert json.loads((cache / "toy" / "meta.json").read_text())["entry_digest"] != "stale"
    assert sorted(p.name for p in cache.iterdir()) == ["downloads", "lock.json", "toy"]


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
