"""Logistic completers for binary forgetting (1 = the fine-tuned model no longer answers correctly).

logit P(z = 1) = mu + b_i + c_j (+ p_i . q_j for logistic MF), with an L2 penalty `l2` on every
parameter but mu. Training rows are fitted full-batch: L-BFGS by default, or solver="gd" for the
reference's plain gradient ascent (step 1e-3, 5,000 iterations). A new row's (b, p) is fitted to
its revealed entries by Newton's method with the column parameters fixed. `predict` returns
probabilities; the protocol calls an entry forgotten when the probability exceeds 0.5 (logit > 0).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from lmforget.errors import LmforgetError
from lmforget.predict.base import Completer, mask_groups, register


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


class _LogisticBase(Completer):
    binary = True
    _rank: int = 0

    def _params(self):  # (rank, l2, solver, n_iter, lr)
        raise NotImplementedError

    def check_params(self) -> None:
        self._check_float("l2")
        self._check_choice("solver", ("lbfgs", "gd"))
        self._check_int("n_iter", 1)
        self._check_float("lr", strict=True)

    def _fit(self, Z: np.ndarray) -> None:
        rank, l2, solver, n_iter, lr = self._params()
        obs = ~np.isnan(Z)
        vals = Z[obs]
        if not np.isin(vals, (0.0, 1.0)).all():
            raise LmforgetError(f"method {self.name!r} needs a binary matrix (entries 0 or 1, NaN missing)")
        y = np.where(obs, Z, 0.0)
        m, n = Z.shape
        rng = np.random.default_rng(getattr(self, "random_state", 0))  # only rank > 0 draws
        p0 = rng.normal(0.0, 0.01, size=(m, rank))
        q0 = rng.normal(0.0, 0.01, size=(n, rank))
        mean = float(np.clip(vals.mean(), 1e-3, 1 - 1e-3))
        theta0 = np.concatenate([[np.log(mean / (1 - mean))], np.zeros(m), np.zeros(n), p0.ravel(), q0.ravel()])

        def unpack(theta):
            mu = theta[0]
            b = theta[1:1 + m]
            c = theta[1 + m:1 + m + n]
            P = theta[1 + m + n:1 + m + n + m * rank].reshape(m, rank)
            Q = theta[1 + m + n + m * rank:].reshape(n, rank)
            return mu, b, c, P, Q

        def loss_grad(theta):
            mu, b, c, P, Q = unpack(theta)
            x = mu + b[:, None] + c[None, :] + P @ Q.T
            loss = float(((_softplus(x) - y * x) * obs).sum())
            loss += 0.5 * l2 * float((theta[1:] ** 2).sum())
            G = (expit(x) - y) * obs
            grad = np.concatenate([[G.sum()], G.sum(axis=1) + l2 * b, G.sum(axis=0) + l2 * c,
                                   (G @ Q + l2 * P).ravel(), (G.T @ P + l2 * Q).ravel()])
            return loss, grad

        if solver == "lbfgs":
            theta = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B",
                             options={"maxiter": n_iter, "gtol": 1e-6}).x
        else:
            theta = theta0
            for _ in range(n_iter):
                theta = theta - lr * loss_grad(theta)[1]
        mu, b, c, P, Q = unpack(theta)
        self.mu_, self.row_bias_, self.col_bias_, self.row_factors_, self.col_factors_ = mu, b, c, P, Q

    def decision_function(self, revealed: np.ndarray) -> np.ndarray:
        """Logits of forgetting for new rows (the protocol thresholds them at 0)."""
        p = self.predict(revealed)
        with np.errstate(divide="ignore"):
            return np.log(p) - np.log1p(-p)

    def _predict(self, R: np.ndarray) -> np.ndarray:
        _, l2, _, _, _ = self._params()
        Q = self.col_factors_
        offset = self.mu_ + self.col_bias_
        theta = np.zeros((R.shape[0], 1 + Q.shape[1]))
        for rows, cols in mask_groups(R):
            if cols.size == 0:
                continue
            X = np.hstack([np.ones((cols.size, 1)), Q[cols]])
            y = R[np.ix_(rows, cols)]
            th = np.zeros((rows.size, X.shape[1]))
            eye = l2 * np.eye(X.shape[1]) + 1e-9 * np.eye(X.shape[1])
            for _ in range(30):
                p = expit(offset[cols] + th @ X.T)
                grad = (p - y) @ X + l2 * th
                w = p * (1 - p)
                H = np.einsum("ki,tk,kj->tij", X, w, X) + eye
                step = np.linalg.solve(H, grad[:, :, None])[:, :, 0]
                th = th - step
                if np.abs(step).max() < 1e-10:
                    break
            theta[rows] = th
        return expit(offset[None, :] + theta[:, :1] + theta[:, 1:] @ Q.T)


@register("logistic-additive")
class LogisticAdditiveCompleter(_LogisticBase):
    """logit = mu + b_i + c_j."""

    def __init__(self, l2: float = 0.1, solver: str = "lbfgs", n_iter: int = 500, lr: float = 1e-3) -> None:
        self.l2 = l2
        self.solver = solver
        self.n_iter = n_iter
        self.lr = lr

    def _params(self):
        return 0, self.l2, self.solver, self.n_iter, self.lr


@register("logistic-mf")
class LogisticMFCompleter(_LogisticBase):
    """logit = mu + b_i + c_j + p_i . q_j, rank 5."""

    def __init__(self, rank: int = 5, l2: float = 0.1, solver: str = "lbfgs", n_iter: int = 500,
                 lr: float = 1e-3, random_state: int | None = 0) -> None:
        self.rank = rank
        self.l2 = l2
        self.solver = solver
        self.n_iter = n_iter
        self.lr = lr
        self.random_state = random_state

    def check_params(self) -> None:
        self._check_int("rank", 1)
        self._check_int("random_state", 0, optional=True)  # seeds the factor initialisation
        super().check_params()

    def _params(self):
        return self.rank, self.l2, self.solver, self.n_iter, self.lr
