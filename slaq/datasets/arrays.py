"""Digests and seeded subsets of converted arrays, identical on every machine."""

from __future__ import annotations

import hashlib

import numpy as np
import scipy.sparse as sp

Array = np.ndarray | sp.csr_matrix
# Rows hashed or standardized at a time: bounds the temporary copies of large sets.
BLOCK_ROWS = 1 << 16


def digest_arrays(X: Array, y: np.ndarray) -> str:
    """SHA-256 of converted arrays (dtype, shape, little-endian bytes): equal data, equal hash."""
    digest = hashlib.sha256()

    def feed(tag: str, a: np.ndarray) -> None:
        a = np.asarray(a)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{tag}:{a.dtype.str}:{a.shape};".encode())
        flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a
        for start in range(0, max(flat.shape[0], 1), BLOCK_ROWS):
            digest.update(np.ascontiguousarray(flat[start : start + BLOCK_ROWS]).data)

    if sp.issparse(X):
        csr = sp.csr_matrix(X)
        csr.sort_indices()
        digest.update(f"csr:{csr.shape};".encode())
        feed("data", csr.data)
        feed("indices", csr.indices.astype(np.int64))
        feed("indptr", csr.indptr.astype(np.int64))
    else:
        feed("X", X)
    feed("y", y)
    return digest.hexdigest()


def subsample_indices(n: int, n_rows: int, seed: int) -> np.ndarray:
    """Sorted indices of n_rows of n rows, identical on every machine and numpy version.

    Uses the raw 64-bit stream of PCG64 seeded through SeedSequence (numpy keeps both stable
    across versions) as sort keys, rather than Generator.choice, whose algorithm may change.
    """
    if n_rows >= n:
        return np.arange(n)
    keys = np.random.PCG64(seed).random_raw(n)
    return np.sort(np.argsort(keys, kind="stable")[:n_rows])


def subsample(X: Array, y: np.ndarray, n_rows: int, seed: int) -> tuple[Array, np.ndarray]:
    """A seeded subset of n_rows rows (in original order); all rows if n_rows >= len(y)."""
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    if n_rows >= X.shape[0]:
        return X, y
    idx = subsample_indices(X.shape[0], n_rows, seed)
    return X[idx], y[idx]
