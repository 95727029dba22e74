"""The reference models' SGD, replicated exactly (scikit-surprise BaselineOnly/SVD as the paper used them).

The reference refits, for every test row, one model on [all training rows; the test row's
revealed entries] by stochastic gradient descent, visiting ratings user by user (training rows
in order, the test row last), each user's ratings in column order, for `n_epochs` epochs.
These functions follow that schedule update for update:

* biases (BaselineOnly, method "sgd"): within one row each column is visited once, so the column
  biases a row sees are those at the start of its pass and the row bias obeys a first-order
  linear recurrence, b <- (1 - lr (1 + reg)) b + lr (z - mu - c_j). That recurrence is one
  `scipy.signal.lfilter` call per row and epoch: exact and vectorised.
* SVD (biased MF): the row factors make the recurrence matrix-valued and data-dependent, so this
  one is a plain loop over ratings. It is meant for small matrices (exactness tests), never for
  production use; the fast solvers live in `mf.py`.

Factor initialisation draws from `numpy.random.RandomState(random_state)` in surprise's order
(row factors, then column factors by first appearance), so a seeded run matches surprise's.
Predictions are not clipped to a rating scale (surprise's `predict(clip=True)` would clip).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def _ratings(Z_train: np.ndarray, r_test: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per user (training rows, then the test row if anything is revealed): (columns, values)."""
    users = []
    for row in list(Z_train) + [r_test]:
        cols = np.flatnonzero(~np.isnan(row))
        if cols.size:
            users.append((cols, row[cols].astype(np.float64)))
    return users


def sgd_biases(Z_train: np.ndarray, r_test: np.ndarray, n_epochs: int, lr: float,
               reg: float) -> tuple[float, np.ndarray, np.ndarray]:
    """mu, row biases [M + 1] (last = test row; 0 if nothing revealed), column biases [N]."""
    users = _ratings(Z_train, r_test)
    mu = float(np.mean(np.concatenate([v for _, v in users])))
    n_users = len(users)
    bu = np.zeros(Z_train.shape[0] + 1)
    bi = np.zeros(Z_train.shape[1])
    a = 1.0 - lr * (1.0 + reg)
    den = np.array([1.0, -a])
    for _ in range(n_epochs):
        for u, (cols, vals) in enumerate(users):
            bic = bi[cols]
            x = lr * (vals - mu - bic)
            y, _ = lfilter([1.0], den, x, zi=[a * bu[u]])
            before = np.empty_like(y)
            before[0] = bu[u]
            before[1:] = y[:-1]
            err = vals - (mu + before + bic)
            bi[cols] = bic + lr * (err - reg * bic)
            bu[u] = y[-1]
    if n_users == Z_train.shape[0]:  # nothing revealed: the test row is an unknown user
        bu[-1] = 0.0
    return mu, bu, bi


def sgd_svd(Z_train: np.ndarray, r_test: np.ndarray, n_factors: int, n_epochs: int, lr: float,
            reg: float, init_mean: float, init_std: float, random_state: int | None) -> np.ndarray:
    """The test row's full prediction mu + b_u + c_j + q_j . p_u under the reference SVD schedule."""
    users = _ratings(Z_train, r_test)
    n_cols = Z_train.shape[1]
    order = np.concatenate([c for c, _ in users])
    first = np.unique(order, return_index=True)[1]
    item_cols = order[np.sort(first)]  # inner item id -> column, by first appearance
    inner = np.full(n_cols, -1)
    inner[item_cols] = np.arange(item_cols.size)
    rng = np.random.RandomState(random_state) if random_state is not None else np.random.mtrand._rand
    pu = rng.normal(init_mean, init_std, size=(len(users), n_factors)).tolist()
    qi = rng.normal(init_mean, init_std, size=(item_cols.size, n_factors)).tolist()
    mu = float(np.mean(np.concatenate([v for _, v in users])))
    bu = [0.0] * len(users)
    bi = [0.0] * item_cols.size
    data = [(inner[c].tolist(), v.tolist()) for c, v in users]
    rf = range(n_factors)
    for _ in range(n_epochs):
        for u, (items, vals) in enumerate(data):
            p = pu[u]
            for i, r in zip(items, vals, strict=True):
                q = qi[i]
                dot = 0.0
                for f in rf:
                    dot += q[f] * p[f]
                err = r - (mu + bu[u] + bi[i] + dot)
                bu[u] += lr * (err - reg * bu[u])
                bi[i] += lr * (err - reg * bi[i])
                for f in rf:
                    puf, qif = p[f], q[f]
                    p[f] += lr * (err * qif - reg * puf)
                    q[f] += lr * (err * puf - reg * qif)
    P, Q = np.asarray(pu), np.asarray(qi)
    pred = np.full(n_cols, mu)
    known_items = inner >= 0
    revealed = bool(np.any(~np.isnan(r_test)))
    pred[known_items] += np.asarray(bi)[inner[known_items]]
    if revealed:
        u = len(users) - 1
        pred += bu[u]
        pred[known_items] += Q[inner[known_items]] @ P[u]
    return pred
