"""Thin SVD of short, wide matrices (tens of rows x ~10^5 columns) and low-rank filling of gaps.

Forgetting matrices have few rows and many columns, so the SVD goes through the small Gram
matrix A A^T (rows x rows): one matrix product and a tiny eigendecomposition instead of a
full LAPACK SVD of the wide matrix.
"""

from __future__ import annotations

import numpy as np


def thin_svd(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U [m, r], s [r], Vt [r, n] with A = U diag(s) Vt, singular values descending, zeros dropped."""
    gram = A @ A.T
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    tol = max(evals[0], 0.0) * max(A.shape) * np.finfo(np.float64).eps * 10 if evals.size else 0.0
    keep = evals > tol
    s = np.sqrt(evals[keep])
    U = evecs[:, keep]
    Vt = (U.T @ A) / s[:, None]
    return U, s, Vt


def fill_low_rank(Z: np.ndarray, start: np.ndarray, rank: int, n_iter: int = 20) -> np.ndarray:
    """Replace NaN entries of Z by a rank-`rank` fit (hard impute), starting from `start`.

    Observed entries are kept; with no NaN the input is returned unchanged (as a copy).
    """
    missing = np.isnan(Z)
    filled = np.where(missing, start, Z)
    if not missing.any():
        return filled
    for _ in range(n_iter):
        U, s, Vt = thin_svd(filled)
        r = min(rank, s.size)
        approx = (U[:, :r] * s[:r]) @ Vt[:r]
        filled[missing] = approx[missing]
    return filled
