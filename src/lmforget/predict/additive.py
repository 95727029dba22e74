"""Example-only (column mean) and additive (mu + row bias + column bias) completers.

The additive fit is the closed form / alternating least squares of the same model the
reference fits by SGD; `solver="sgd"` reproduces the reference's SGD run exactly (see
`lmforget.predict.reference`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmforget.predict.base import Completer, register


@dataclass
class Biases:
    """mu + b_i + c_j for the training rows."""

    mu: float
    row: np.ndarray
    col: np.ndarray

    def baseline(self) -> np.ndarray:
        return self.mu + self.row[:, None] + self.col[None, :]


def fit_biases(Z: np.ndarray, reg_row: float = 0.0, reg_col: float = 0.0, n_iter: int = 30,
               tol: float = 1e-10) -> Biases:
    """Ridge-regularised least squares for mu + b_i + c_j over observed entries (ALS).

    With no missing entries and no regularisation this is the exact one-step solution
    (row means and column means about the grand mean).
    """
    obs = ~np.isnan(Z)
    Z0 = np.where(obs, Z, 0.0)
    mu = float(Z0.sum() / obs.sum())
    n_row = obs.sum(axis=1)
    n_col = obs.sum(axis=0)
    row = np.zeros(Z.shape[0])
    col = np.zeros(Z.shape[1])
    for _ in range(n_iter):
        col_new = ((Z0 - mu - row[:, None]) * obs).sum(axis=0) / np.maximum(n_col + reg_col, 1e-12)
        col_new[n_col == 0] = 0.0
        row_new = ((Z0 - mu - col_new[None, :]) * obs).sum(axis=1) / np.maximum(n_row + reg_row, 1e-12)
        delta = max(np.abs(col_new - col).max(initial=0.0), np.abs(row_new - row).max(initial=0.0))
        row, col = row_new, col_new
        if delta < tol:
            break
    return Biases(mu=mu, row=row, col=col)


def fold_in_row_bias(R: np.ndarray, mu: float, col: np.ndarray, reg: float = 0.0) -> np.ndarray:
    """Row biases of new rows from their revealed entries: shrunk mean of z - mu - c_j."""
    known = ~np.isnan(R)
    resid = np.where(known, R - mu - col[None, :], 0.0)
    return resid.sum(axis=1) / np.maximum(known.sum(axis=1) + reg, 1e-12)


@register("colmean")
class ColumnMeanCompleter(Completer):
    """Example-only baseline: every new row is predicted by the column means of the training rows."""

    any_kind = True

    def __init__(self) -> None:
        pass

    def _fallback(self, R: np.ndarray) -> np.ndarray:
        # Column means never use the revealed entries: only a column nobody measured has no information.
        return np.repeat(self.unmeasured_columns_[None, :], R.shape[0], axis=0)

    def _fit(self, Z: np.ndarray) -> None:
        with np.errstate(invalid="ignore"):
            col = np.nanmean(np.where(np.isnan(Z).all(axis=0)[None, :], 0.0, Z), axis=0)
        self.col_mean_ = col

    def _predict(self, R: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.col_mean_, R.shape).copy()


@register("additive")
class AdditiveCompleter(Completer):
    """z = mu + b_i + c_j. Column biases from the training rows, the new row's bias from its revealed entries.

    solver="als": closed form / ALS (default). solver="sgd": the reference's SGD, replicated
    rating by rating in surprise's order, with each new row refitted together with all
    training rows (slow by design; for exactness checks). Both are deterministic: no random_state.
    """

    def __init__(self, solver: str = "als", reg: float = 0.0, n_epochs: int = 1000,
                 lr: float = 0.005, sgd_reg: float = 0.02) -> None:
        self.solver = solver
        self.reg = reg
        self.n_epochs = n_epochs
        self.lr = lr
        self.sgd_reg = sgd_reg

    def check_params(self) -> None:
        check_bias_params(self, ("als", "sgd"))

    def _fit(self, Z: np.ndarray) -> None:
        if self.solver == "sgd":
            self.Z_train_ = Z
            return
        self.biases_ = fit_biases(Z, reg_row=self.reg, reg_col=self.reg)

    def _predict(self, R: np.ndarray) -> np.ndarray:
        if self.solver == "sgd":
            from lmforget.predict.reference import sgd_biases

            out = np.empty_like(R)
            for t in range(R.shape[0]):
                mu, bu, bi = sgd_biases(self.Z_train_, R[t], self.n_epochs, self.lr, self.sgd_reg)
                out[t] = mu + bu[-1] + bi
            return out
        b = self.biases_
        row = fold_in_row_bias(R, b.mu, b.col, self.reg)
        return b.mu + row[:, None] + b.col[None, :]


def check_bias_params(completer: Completer, solvers: tuple[str, ...]) -> None:
    """The parameters the additive baseline shares with the completers built on it."""
    completer._check_choice("solver", solvers)
    completer._check_float("reg")
    completer._check_int("n_epochs", 1)
    completer._check_float("lr", strict=True)
    completer._check_float("sgd_reg")
