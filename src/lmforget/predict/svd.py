"""Low-rank filling of gaps (hard impute) with the Gram-matrix thin SVD of `lmforget.linalg`."""

from __future__ import annotations

import numpy as np

from lmforget.linalg import thin_svd

__all__ = ["fill_low_rank", "thin_svd"]


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
