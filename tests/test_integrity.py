"""Integrity of cached data (converted arrays, downloads, blocks) and the umask of outputs."""

from __future__ import annotations

import bz2
import hashlib
import json
import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from slaq import datasets as ds
from slaq.blocks import BlockSetError, open_blockset, write_blocks
from slaq.datasets import DatasetError
from slaq.traces import (
    TRACE_SCHEMA,
    write_json_atomic,
    write_table_atomic,
    write_text_atomic,
)
from tests.test_downloads import _libsvm_data, _libsvm_entry, _registry


def _flip(path: Path, offset: int = -64, n: int = 16) -> None:
    """Invert n bytes of a file in place (at offset from the end if negative)."""
    data = bytearray(path.read_bytes())
    start = offset % len(data)
    data[start : start + n] = bytes(b ^ 0xFF for b in data[start : start + n])
    path.write_bytes(bytes(data))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------------------------------
# converted caches


@pytest.mark.parametrize(("damage", "file"), [(_flip, "X.npy"), (_truncate, "y.npy")])
def test_corrupt_cache_is_rederived_from_verified_source(tmp_path, caplog, damage, file):
    cache = tmp_path / "c"
    good = ds.load_dataset("wine", cache_dir=cache)
    damage(cache / "wine" / file)
    with caplog.at_level(logging.WARNING, logger="slaq.datasets"):
        again = ds.load_dataset("wine", cache_dir=cache)
    # Re-derived, not loaded silently wrong: the warning names the file.
    assert str(cache / "wine" / file) in caplog.text and "re-deriving wine" in caplog.text
    np.testing.assert_array_equal(again.X, good.X)
    np.testing.assert_array_equal(again.y, good.y)
    assert ds.digest_arrays(again.X, again.y) == good.meta["sha256"]


def test_corrupt_cache_that_cannot_be_rederived_is_an_error_naming_the_file(server, tmp_path):
    text, X, _ = _libsvm_data()
    server.routes["/toy.bz2"] = bz2.compress(text)
    registry = _registry(tmp_path, {"toy": _libsvm_entry(server.url("/toy.bz2"), X.shape)})
    cache = tmp_path / "c"
    ds.prepare("toy", cache_dir=cache, allow_download=True, registry=registry)
    # The raw source is gone and downloads are off: nothing to re-derive from.
    for path in (cache / "downloads" / "toy").iterdir():
        path.unlink()
    _flip(cache / "toy" / "X.npy")
    with pytest.raises(DatasetError) as err:
        ds.load_dataset("toy", cache_dir=cache, registry=registry)
    msg = str(err.value)
    assert msg.startswith(f"{cache / 'toy' / 'X.npy'}: SHA-256 ")
    assert "(corrupt)" in msg and "re-deriving toy failed" in msg


def test_cli_verify_and_fetch_on_a_corrupt_cache(tmp_path, capsys):
    from slaq.cli import main

    cache = tmp_path / "c"
    ds.prepare("wine", cache_dir=cache)
    ds.prepare("digits", cache_dir=cache)
    assert main(["datasets", "verify", "--data-dir", str(cache)]) == 0
    assert capsys.readouterr().out.count("ok ") == 2
    _flip(cache / "digits" / "X.npy", offset=200)
    assert main(["datasets", "verify", "--data-dir", str(cache)]) == 1
    out = capsys.readouterr().out
    assert f"corrupt     converted  {cache / 'digits'}  {cache / 'digits' / 'X.npy'}" in out
    assert f"ok          converted  {cache / 'wine'}" in out
    # fetch does not report it ready as it is: it re-derives it, and verify agrees.
    assert main(["datasets", "fetch", "digits", "--offline", "--data-dir", str(cache)]) == 0
    assert main(["datasets", "verify", "digits", "--data-dir", str(cache)]) == 0
    assert main(["datasets", "verify", "--data-dir", str(tmp_path / "none")]) == 2


# ---------------------------------------------------------------------------------------------
# downloads


@pytest.fixture
def toy(server, tmp_path):
    """An unpinned bz2 LIBSVM file on the local server, its registry, and the full matrix."""
    text, X, labels = _libsvm_data()
    blob = bz2.compress(text)
    server.routes["/toy.bz2"] = blob
    registry = _registry(tmp_path, {"toy": _libsvm_entry(server.url("/toy.bz2"), X.shape)})
    return registry, blob, X, text


def test_short_first_download_does_not_poison_the_lock(toy, server, tmp_path):
    registry, blob, X, text = toy
    # The first copy is complete as HTTP and bz2 go, but holds only half of the rows.
    half = b"".join(text.splitlines(keepends=True)[:20])
    server.first["/toy.bz2"] = [bz2.compress(half)]
    cache = tmp_path / "c"
    with pytest.raises(DatasetError, match=r"toy: converted data has shape \(20, 6\)"):
        ds.prepare("toy", cache_dir=cache, allow_download=True, registry=registry)
    assert not (cache / "lock.json").exists()
    assert list((cache / "downloads" / "toy").iterdir()) == []  # the bad copy was removed
    # The retry downloads again, and only the validated copy is pinned.
    data = ds.load_dataset("toy", cache_dir=cache, allow_download=True, registry=registry)
    assert server.hits["/toy.bz2"] == 2
    np.testing.assert_array_equal(data.X, X.astype(np.float32))
    lock = json.loads((cache / "lock.json").read_text())["files"]
    assert lock[server.url("/toy.bz2")]["sha256"] == hashlib.sha256(blob).hexdigest()


def test_unvalidated_leftover_download_is_never_parsed(toy, server, tmp_path):
    registry, _, X, _ = toy
    cache = tmp_path / "c"
    # Left by a run killed before validating it: a different, well-formed file.
    leftover = cache / "downloads" / "toy" / "toy.bz2"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(bz2.compress(_libsvm_data(seed=5)[0]))
    data = ds.load_dataset("toy", cache_dir=cache, allow_download=True, registry=registry)
    assert server.hits["/toy.bz2"] == 1
    np.testing.assert_array_equal(data.X, X.astype(np.float32))


def test_pinned_download_is_used_offline_and_verified(toy, server, tmp_path, capsys):
    from slaq.cli import main

    registry, blob, _, _ = toy
    cache = tmp_path / "c"
    good = ds.load_dataset("toy", cache_dir=cache, allow_download=True, registry=registry)
    (cache / "toy" / "X.npy").unlink()
    # Downloads off: the verified download in downloads/ is enough to re-derive.
    again = ds.load_dataset("toy", cache_dir=cache, registry=registry)
    np.testing.assert_array_equal(again.X, good.X)
    assert server.hits["/toy.bz2"] == 1
    download = cache / "downloads" / "toy" / "toy.bz2"
    _flip(download, offset=len(blob) // 2)
    registry_file = tmp_path / "registry.yaml"
    registry_file.write_text(json.dumps({"version": 1, "datasets": {"toy": _toy_entry(toy)}}))
    args = ["datasets", "verify", "--data-dir", str(cache), "--registry", str(registry_file)]
    assert main(args) == 1
    assert f"corrupt     download   {download}" in capsys.readouterr().out
    # Offline, the corrupt download is not used (no network is tried either).
    (cache / "toy" / "X.npy").unlink()
    with pytest.raises(DatasetError, match=f"downloads are off \\({download} is corrupt: "):
        ds.load_dataset("toy", cache_dir=cache, registry=registry)
    assert server.hits["/toy.bz2"] == 1


def _toy_entry(toy) -> dict:
    registry = toy[0]
    source = registry.get("toy").files["data"].sources[0]
    return _libsvm_entry(source.location, registry.get("toy").shape)


# ---------------------------------------------------------------------------------------------
# blocks


def test_corrupt_block_is_an_error_naming_the_file(tmp_path, capsys):
    from slaq.cli import main

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((100, 4)), rng.integers(0, 2, 100)
    bs = write_blocks(X, y, tmp_path / "data" / "blocks" / "set", 4)
    block = bs.directory / "X_00002.npy"
    _flip(block)
    # The cheap check (sizes, headers) cannot see flipped bytes; the digest can.
    assert open_blockset(bs.directory, check="cheap") == bs
    with pytest.raises(BlockSetError, match=f"corrupt block set: {block}: SHA-256 "):
        open_blockset(bs.directory)
    assert main(["datasets", "verify", "--data-dir", str(tmp_path / "data")]) == 1
    assert f"corrupt     blocks     {bs.directory}" in capsys.readouterr().out
    _truncate(bs.directory / "y_00001.npy")
    with pytest.raises(BlockSetError, match=r"y_00001.npy: \d+ bytes, recorded \d+ \(truncated"):
        open_blockset(bs.directory, check="cheap")


def test_legacy_block_set_without_digests_is_checked_cheaply(tmp_path):
    rng = np.random.default_rng(1)
    bs = write_blocks(rng.standard_normal((30, 3)), None, tmp_path / "set", 3)
    meta_path = bs.directory / "blockset.json"
    meta = json.loads(meta_path.read_text())
    del meta["files"]
    meta["version"] = 1
    meta_path.write_text(json.dumps(meta))
    assert open_blockset(bs.directory) == bs
    np.save(bs.directory / "X_00001.npy", np.zeros((9, 3), dtype=np.float32))
    with pytest.raises(BlockSetError, match=r"X_00001.npy: header says \(9, 3\)"):
        open_blockset(bs.directory)


# ---------------------------------------------------------------------------------------------
# permissions


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_outputs_honour_the_umask(umask, tmp_path, toy):
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    write_text_atomic(tmp_path / "out" / "summary.md", "x\n")
    write_json_atomic({"a": 1}, tmp_path / "out" / "run.json")
    write_table_atomic([], TRACE_SCHEMA, tmp_path / "out" / "trace.parquet")
    for name in ("summary.md", "run.json", "trace.parquet"):
        assert _mode(tmp_path / "out" / name) == file_mode, name
    cache = tmp_path / "data"
    ds.prepare("wine", cache_dir=cache)
    ds.prepare("toy", cache_dir=cache, allow_download=True, registry=toy[0])
    bs = write_blocks(np.ones((8, 2)), None, cache / "blocks" / "set", 2)
    dirs = [cache / "wine", cache / "toy", cache / "downloads" / "toy", bs.directory]
    files = [p for d in dirs for p in d.iterdir()] + [cache / "lock.json"]
    assert {str(d): _mode(d) for d in dirs} == {str(d): dir_mode for d in dirs}
    assert {str(f): _mode(f) for f in files} == {str(f): file_mode for f in files}
    assert {f.name for f in files} >= {"meta.json", "blockset.json", "toy.bz2", "X_00000.npy"}
