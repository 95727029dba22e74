"""Biased matrix factorisation, z = mu + b_i + c_j + p_i . q_j (rank 5), with a fold-in for new rows.

Fast solver ("svd", default): closed-form biases, the rank-r SVD of the training residuals gives
the column factors q_j (missing training entries filled by hard impute), and each new row's
(b, p) is a ridge least-squares fit to its revealed entries. The ridge is Bayesian: factors have
unit prior variance and the noise variance is the residual variance beyond rank r, times `reg`.
solver="sgd" replicates the reference's SGD (surprise SVD) refit per test row; see reference.py.
"""

from __future__ import annotations

import numpy as np

from lmforget.predict.additive import check_bias_params, fit_biases
from lmforget.predict.base import Completer, mask_groups, register
from lmforget.predict.svd import fill_low_rank, thin_svd


def fold_in(R: np.ndarray, offset: np.ndarray, Q: np.ndarray, ridge: np.ndarray) -> np.ndarray:
    """Ridge fits of z - offset ~ X theta on each row's revealed columns, X = [1, Q].

    Returns theta [T, 1 + r]. `ridge` [1 + r] is the penalty per coefficient.
    Rows sharing a revealed pattern share one factorised system.
    """
    T = R.shape[0]
    theta = np.zeros((T, 1 + Q.shape[1]))
    for rows, cols in mask_groups(R):
        if cols.size == 0:
            continue
        X = np.hstack([np.ones((cols.size, 1)), Q[cols]])
        y = R[np.ix_(rows, cols)] - offset[cols]
        A = X.T @ X + np.diag(ridge)
        theta[rows] = np.linalg.solve(A, X.T @ y.T).T
    return theta


@register("mf")
class MFCompleter(Completer):
    """Biased MF of rank `rank`: SVD of training residuals + ridge fold-in (or the reference SGD)."""

    def __init__(self, rank: int = 5, reg: float = 1.0, solver: str = "svd", n_epochs: int = 1000,
                 lr: float = 0.005, sgd_reg: float = 0.0, init_std: float = 0.001,
                 random_state: int | None = 0) -> None:
        self.rank = rank
        self.reg = reg
        self.solver = solver
        self.n_epochs = n_epochs
        self.lr = lr
        self.sgd_reg = sgd_reg
        self.init_std = init_std
        self.random_state = random_state  # seeds the SGD solver's factor initialisation

    def check_params(self) -> None:
        self._check_int("rank", 1)
        self._check_float("init_std")
        self._check_int("random_state", 0, optional=True)
        check_bias_params(self, ("svd", "sgd"))

    def _fit(self, Z: np.ndarray) -> None:
        if self.solver == "sgd":
            self.Z_train_ = Z
            return
        b = fit_biases(Z)
        base = b.baseline()
        resid = fill_low_rank(Z - base, np.zeros_like(Z), self.rank) if np.isnan(Z).any() else Z - base
        U, s, Vt = thin_svd(resid)
        r = min(self.rank, s.size)
        m = Z.shape[0]
        self.biases_ = b
        self.col_factors_ = (Vt[:r].T * s[:r]) / np.sqrt(m)  # training p_i have unit mean square
        tail = float((s[r:] ** 2).sum()) / resid.size
        self.noise_var_ = max(tail, 1e-6 * float((s ** 2).sum()) / resid.size, 1e-12)

    def _predict(self, R: np.ndarray) -> np.ndarray:
        if self.solver == "sgd":
            from lmforget.predict.reference import sgd_svd

            return np.stack([
                sgd_svd(self.Z_train_, R[t], self.rank, self.n_epochs, self.lr, self.sgd_reg,
                        0.0, self.init_std, self.random_state)
                for t in range(R.shape[0])
            ])
        b, Q = self.biases_, self.col_factors_
        ridge = np.concatenate([[1e-9], np.full(Q.shape[1], self.reg * self.noise_var_)])
        theta = fold_in(R, b.mu + b.col, Q, ridge)
        return b.mu + b.col[None, :] + theta[:, :1] + theta[:, 1:] @ Q.T
