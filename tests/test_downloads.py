"""Datasets: the download path (a local HTTP server on 127.0.0.1), hashes and the lock file,
IDX parsing, source fallback and failed cache writes."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import shutil
import socket
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import slaq.datasets.cache
from slaq import datasets as ds
from slaq.datasets import DatasetError, Registry
from slaq.datasets.lock import Lock

# ---------------------------------------------------------------------------------------------
# fixtures


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
