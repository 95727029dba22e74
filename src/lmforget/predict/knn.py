"""Task-based k-nearest-neighbours on residuals over the additive baseline (KNNBaseline, MSD similarity).

similarity(new row, training row) = 1 / (1 + mean squared difference on the columns both have);
for each column the k most similar training rows that measured it vote with their residual
z - (mu + b_v + c_j), weighted by similarity. All rows of a block are handled with matrix products.
"""

from __future__ import annotations

import numpy as np

from lmforget.predict.additive import check_bias_params, fit_biases, fold_in_row_bias
from lmforget.predict.base import Completer, register


def msd_similarity(R: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """[T, M] similarities 1/(1 + MSD) between new rows R (NaN = unknown) and training rows Z.

    Pairs with no column in common get similarity 0 (surprise's min_support = 1).
    """
    used = np.flatnonzero((~np.isnan(R)).any(axis=0))  # only revealed columns can contribute
    R, Z = R[:, used], Z[:, used]
    m_r = ~np.isnan(R)
    m_z = ~np.isnan(Z)
    r0 = np.where(m_r, R, 0.0)
    z0 = np.where(m_z, Z, 0.0)
    mr, mz = m_r.astype(np.float64), m_z.astype(np.float64)
    sq = (r0 * r0) @ mz.T - 2.0 * r0 @ z0.T + mr @ (z0 * z0).T
    freq = mr @ mz.T
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = 1.0 / (np.maximum(sq, 0.0) / freq + 1.0)
    sim[freq < 1] = 0.0
    return sim


def neighbour_average(sim: np.ndarray, resid: np.ndarray, k: int, min_k: int = 1,
                      return_short: bool = False):
    """[T, N] similarity-weighted mean residual of each column's k most similar raters.

    resid: [M, N] training residuals, NaN where a training row did not measure the column.
    Ties in similarity go to the earlier training row (as heapq.nlargest does); only positive
    similarities count; columns with fewer than `min_k` such neighbours get 0 (with `return_short`,
    also returned as a [T, N] bool mask).
    """
    T, M = sim.shape
    obs = ~np.isnan(resid)
    r0 = np.where(obs, resid, 0.0)
    out = np.zeros((T, resid.shape[1]))
    short = np.zeros((T, resid.shape[1]), dtype=bool)
    all_obs = bool(obs.all())
    for t in range(T):  # one row of a block at a time keeps memory at [M, N]
        order = np.argsort(-sim[t], kind="stable")
        s = sim[t, order]
        if all_obs:
            w = np.zeros(M)
            w[order] = np.where((np.arange(M) < k) & (s > 0), s, 0.0)
            num = w @ r0
            den = np.full(resid.shape[1], w.sum())
            cnt = np.full(resid.shape[1], np.count_nonzero(w))
        else:
            o = obs[order]
            chosen = o & (np.cumsum(o, axis=0) <= k) & (s[:, None] > 0)
            ws = np.where(chosen, s[:, None], 0.0)
            num = (ws * r0[order]).sum(axis=0)
            den = ws.sum(axis=0)
            cnt = chosen.sum(axis=0)
        enough = (den > 0) & (cnt >= min_k)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[t] = np.where(enough, num / den, 0.0)
        short[t] = ~enough
    return (out, short) if return_short else out


@register("knn")
class KNNCompleter(Completer):
    """KNNBaseline, task-based, MSD similarity on the revealed columns, k = 40.

    solver="als": closed-form baseline, new-row bias from its revealed entries (default).
    solver="sgd": baseline from the reference's SGD refit per test row (BaselineOnly-style,
    `n_epochs`, `lr`, `sgd_reg`), as surprise's KNNBaseline with bsl_options method "sgd".
    Deterministic (ties go to the earlier training row): no random_state. A column with fewer than
    `min_k` usable neighbours is predicted by the baseline alone, and reported as a fallback.
    """

    def __init__(self, k: int = 40, min_k: int = 1, solver: str = "als", reg: float = 0.0,
                 n_epochs: int = 1000, lr: float = 0.005, sgd_reg: float = 0.02) -> None:
        self.k = k
        self.min_k = min_k
        self.solver = solver
        self.reg = reg
        self.n_epochs = n_epochs
        self.lr = lr
        self.sgd_reg = sgd_reg

    def check_params(self) -> None:
        self._check_int("k", 1)
        self._check_int("min_k", 1)
        if self.min_k > self.k:
            raise self._bad("min_k", f"at most k = {self.k} (else every column falls back to the baseline)")
        check_bias_params(self, ("als", "sgd"))

    def _fit(self, Z: np.ndarray) -> None:
        self.Z_train_ = Z
        if self.solver == "als":
            self.biases_ = fit_biases(Z, reg_row=self.reg, reg_col=self.reg)
            self.resid_ = Z - self.biases_.baseline()

    def _predict(self, R: np.ndarray) -> np.ndarray:
        return self._predict_with_fallback(R)[0]

    def _predict_with_fallback(self, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sim = msd_similarity(R, self.Z_train_)
        fallback = self._fallback(R)
        if self.solver == "sgd":
            from lmforget.predict.reference import sgd_biases

            out = np.empty_like(R)
            for t in range(R.shape[0]):
                mu, bu, bi = sgd_biases(self.Z_train_, R[t], self.n_epochs, self.lr, self.sgd_reg)
                resid = self.Z_train_ - (mu + bu[:-1, None] + bi[None, :])
                avg, short = neighbour_average(sim[t:t + 1], resid, self.k, self.min_k, return_short=True)
                out[t] = mu + bu[-1] + bi + avg[0]
                fallback[t] |= short[0]
            return out, fallback
        b = self.biases_
        row = fold_in_row_bias(R, b.mu, b.col, self.reg)
        avg, short = neighbour_average(sim, self.resid_, self.k, self.min_k, return_short=True)
        return b.mu + row[:, None] + b.col[None, :] + avg, fallback | short
