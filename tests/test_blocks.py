"""Block files on disk, the in-process executor and the shared convergence rule."""

import os
import re

import numpy as np
import pytest
import scipy.sparse as sp

import slaq.blocks as blocks
from slaq.algorithms import TRAINERS, ConvergenceRule, StopTraining, make_trainer
from slaq.blocks import (
    BlockSetError,
    LocalContext,
    load_block,
    open_blockset,
    split_sizes,
    write_blocks,
)


def _data(n=103, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, 3, n)


def _count_rows(params, X, y):
    return (float(X.shape[0]), np.asarray(X, np.float64).sum(axis=0))


# --- files -----------------------------------------------------------------------------------


def test_round_trip_dense(tmp_path):
    X, y = _data()
    bs = write_blocks(X, y, tmp_path / "set", 7)
    assert bs == open_blockset(tmp_path / "set")
    assert (bs.n_blocks, bs.n_rows, bs.n_features, bs.sparse) == (7, 103, 5, False)
    parts = [load_block(bs.directory, i) for i in range(7)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), X.astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
    assert parts[0][0].dtype == np.float32 and parts[0][1].dtype == np.int32


def test_real_targets_keep_block_dtype_and_none_means_zeros(tmp_path):
    X, _ = _data()
    bs = write_blocks(X, X[:, 0], tmp_path / "reg", 3, dtype=np.float64)
    assert load_block(bs.directory, 2)[1].dtype == np.float64
    bs = write_blocks(X, None, tmp_path / "unsup", 3)
    assert not np.any(load_block(bs.directory, 1)[1])


def test_split_is_contiguous_balanced_and_deterministic(tmp_path):
    assert split_sizes(103, 7) == (15, 15, 15, 15, 15, 14, 14)
    assert split_sizes(10, 10) == (1,) * 10
    with pytest.raises(ValueError, match="non-empty"):
        split_sizes(3, 4)
    X, y = _data()
    a = write_blocks(X, y, tmp_path / "a", 7)
    b = write_blocks(X, y, tmp_path / "b", 7)
    assert a.rows_per_block == split_sizes(103, 7)
    first = load_block(a.directory, 1)[0]
    np.testing.assert_array_equal(first, X[15:30].astype(np.float32))
    for name in sorted(os.listdir(a.directory)):
        assert (a.directory / name).read_bytes() == (b.directory / name).read_bytes(), name


def test_loaded_blocks_are_memory_mapped_and_cached(tmp_path):
    X, y = _data()
    bs = write_blocks(X, y, tmp_path / "set", 4)
    Xb, yb = load_block(bs.directory, 2)
    assert isinstance(Xb, np.memmap) and isinstance(yb, np.memmap)
    assert not Xb.flags.writeable
    again = load_block(str(bs.directory), 2)
    assert again[0] is Xb and again[1] is yb


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    X, y = _data()
    real_save, calls = np.save, []

    def failing_save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(blocks.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_blocks(X, y, tmp_path / "set", 4)
    assert os.listdir(tmp_path) == []


def test_existing_directory_is_kept_unless_overwrite(tmp_path):
    X, y = _data()
    bs = write_blocks(X, y, tmp_path / "set", 4)
    old = load_block(bs.directory, 0)[0]
    with pytest.raises(FileExistsError):
        write_blocks(2 * X, y, tmp_path / "set", 4)
    write_blocks(2 * X, y, tmp_path / "set", 4, overwrite=True)
    # The cache must notice the new files rather than serve the old mapping.
    new = load_block(bs.directory, 0)[0]
    np.testing.assert_allclose(new, 2 * np.asarray(old))
    assert sorted(os.listdir(tmp_path)) == ["set"]


def test_open_blockset_errors_name_the_problem(tmp_path):
    with pytest.raises(BlockSetError, match="not a block set"):
        open_blockset(tmp_path)
    X, y = _data()
    bs = write_blocks(X, y, tmp_path / "set", 4)
    os.remove(bs.directory / "y_00003.npy")
    with pytest.raises(BlockSetError, match="y_00003"):
        open_blockset(bs.directory)


def test_sparse_input_small_is_densified_large_stays_csr(tmp_path, monkeypatch):
    X, y = _data(n=200, d=30)
    X[np.abs(X) < 1.0] = 0.0
    bs = write_blocks(sp.csr_matrix(X), y, tmp_path / "small", 4)
    assert not bs.sparse and isinstance(load_block(bs.directory, 0)[0], np.memmap)
    monkeypatch.setattr(blocks, "DENSE_LIMIT_BYTES", 0)
    bs_sp = write_blocks(sp.csr_matrix(X), y, tmp_path / "big", 4)
    assert bs_sp.sparse and sp.issparse(load_block(bs_sp.directory, 0)[0])
    # Every trainer gives the same objectives on the CSR and the dense copy of the data.
    for alg, k in [("logreg", 3), ("mlp", 3), ("kmeans", 3), ("gmm", 2), ("linreg", 1)]:
        runs = []
        for s in (bs, bs_sp):
            ctx = LocalContext(s, max_iter=4)
            make_trainer(alg, 30, k, {}, seed=1).run(ctx)
            runs.append(ctx.objectives)
        np.testing.assert_allclose(runs[0], runs[1], rtol=1e-9, err_msg=alg)


# --- LocalContext ----------------------------------------------------------------------------

# Setup call(s), then iterations of one or more map_reduce calls (line-search trials,
# Hessian-vector products) and exactly one report (slaq/algorithms/base.py).
PROTOCOL = re.compile(r"^(map_reduce,)*(map_reduce,)+report,((map_reduce,)+report,)*$")


@pytest.mark.parametrize("algorithm", sorted(TRAINERS))
def test_every_trainer_follows_the_protocol(tmp_path, algorithm):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((120, 4))
    y = (X[:, 0] > 0).astype(int) if algorithm != "linreg" else X @ np.ones(4)
    bs = write_blocks(X, y, tmp_path / "set", 6)
    k = 1 if algorithm == "linreg" else 2
    ctx = LocalContext(bs, max_iter=7)
    make_trainer(algorithm, 4, k, {}, seed=0).run(ctx)
    assert PROTOCOL.match("".join(c + "," for c in ctx.calls)), ctx.calls
    assert ctx.calls.count("report") == len(ctx.objectives)
    # Each trainer either ran its budget or stopped on its own before it.
    assert len(ctx.objectives) == 7 or ctx.stop_reason is None


def test_max_iter_stops_after_exactly_that_many_reports(tmp_path):
    X, y = _data()
    bs = write_blocks(X, y, tmp_path / "set", 4)
    ctx = LocalContext(bs, max_iter=3)
    make_trainer("logreg_sgd", 5, 3, {}, seed=0).run(ctx)
    assert len(ctx.objectives) == 3 and ctx.stop_reason == "max_iter"
    with pytest.raises(StopTraining):
        ctx.report(1.0)


def test_tol_and_patience():
    rule = ConvergenceRule(max_iter=100, tol=0.01, patience=3)
    # 10% drop, then three drops below 1%: stops on the third slow one.
    seq = [1.0, 0.9, 0.899, 0.898, 0.897]
    assert [rule.update(v) for v in seq] == [False] * 4 + [True]
    assert rule.reason == "converged"
    rule = ConvergenceRule(max_iter=100, tol=0.01, patience=2)
    # A fast iteration resets the count; a rise counts as slow.
    seq = [1.0, 0.999, 0.5, 0.499, 0.6]
    assert [rule.update(v) for v in seq] == [False, False, False, False, True]
    rule = ConvergenceRule(max_iter=100, tol=0.0, patience=1)
    assert not any(rule.update(1.0) for _ in range(50))
    rule = ConvergenceRule(max_iter=100)
    assert rule.update(float("nan")) and rule.reason == "diverged"
    with pytest.raises(ValueError):
        ConvergenceRule(max_iter=0)


def test_local_context_tol_stops_a_job(tmp_path):
    X, y = _data()
    bs = write_blocks(X, (y > 0).astype(int), tmp_path / "set", 4)
    ctx = LocalContext(bs, max_iter=10_000, tol=1e-3, patience=2)
    make_trainer("svm", 5, 2, {"reg": 0.1}, seed=0).run(ctx)
    assert ctx.stop_reason == "converged" and len(ctx.objectives) < 10_000


def test_block_subset_maps_job_local_ids(tmp_path):
    X, y = _data()
    bs = write_blocks(X, y, tmp_path / "set", 7)
    ctx = LocalContext(bs, blocks=[1, 4, 6])
    assert ctx.n_blocks == 3 and ctx.n_rows == 15 + 15 + 14
    n, s = ctx.map_reduce(_count_rows, None)
    assert n == 44
    np.testing.assert_allclose(
        s, X[np.r_[15:30, 60:75, 89:103]].astype(np.float32).astype(np.float64).sum(0)
    )
    n, _ = ctx.map_reduce(_count_rows, None, [2])
    assert n == 14
    with pytest.raises(IndexError):
        ctx.map_reduce(_count_rows, None, [3])
    with pytest.raises(ValueError, match="outside"):
        LocalContext(bs, blocks=[7])
