"""Our completer: the Gaussian conditional mean under a low-rank model of the training rows.

Rows are modelled as z = m + V a + e with m the column means, V the top-r right singular
vectors of the centred training rows, a ~ N(0, diag(s_k^2 / M)) (the spread of the training
rows along each direction) and e ~ N(0, alpha * sigma_r^2) (the variance left beyond rank r).
A new row's unrevealed entries are predicted by the posterior mean of a given its revealed
entries: a ridge fold-in whose penalty per direction is set by the data rather than by hand.

Rank r and the noise scale alpha are chosen by cross-validation on the training rows that
simulates the evaluation protocol: hold out rows, reveal `cv_observed` random columns, score
the rest. Unlike a fixed-rank MF fold-in this uses as many directions as the data support and
shrinks the weak ones, which is what wins when only ~30 entries of a row are known.
"""

from __future__ import annotations

import numpy as np

from lmforget.predict.additive import fit_biases
from lmforget.predict.base import Completer, mask_groups, register
from lmforget.predict.svd import fill_low_rank, thin_svd

RANK_GRID = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 32, 40, 50, 64)
NOISE_GRID = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class _Basis:
    """Column means, directions and their prior/noise variances from a set of training rows."""

    def __init__(self, Z: np.ndarray) -> None:
        m, n = Z.shape
        self.mean = Z.mean(axis=0)
        centred = Z - self.mean
        offsets = centred.mean(axis=1)
        # Directions of the column-centred rows; with `intercept` a per-row offset becomes one more
        # direction (the constant column, orthogonal to the double-centred directions).
        _, s, self.Vt = thin_svd(centred)
        _, s_dc, self.Vt_dc = thin_svd(centred - offsets[:, None])
        floor = max(float((s ** 2).sum()) / (m * n) * 1e-4, 1e-12)
        self.prior = {False: s ** 2 / m, True: s_dc ** 2 / m}
        self.noise = {False: np.maximum(_tails(s) / (m * n), floor),   # noise[r] = variance beyond rank r
                      True: np.maximum(_tails(s_dc) / (m * n), floor)}
        self.offset_prior = max(float(np.mean(offsets ** 2)), 1e-12)

    def max_rank(self, intercept: bool) -> int:
        return (self.Vt_dc if intercept else self.Vt).shape[0]

    def directions(self, rank: int, intercept: bool) -> np.ndarray:
        """[d, N]: the top `rank` directions, preceded by the constant row when `intercept`."""
        if not intercept:
            return self.Vt[:rank]
        return np.vstack([np.ones((1, self.Vt_dc.shape[1])), self.Vt_dc[:rank]])

    def penalties(self, rank: int, alpha: float, intercept: bool) -> np.ndarray:
        """Ridge penalty per direction: noise variance over prior variance (posterior mean)."""
        rank = min(rank, self.max_rank(intercept))
        noise = alpha * self.noise[intercept][rank]
        pen = noise / self.prior[intercept][:rank]
        return np.concatenate([[noise / self.offset_prior], pen]) if intercept else pen

    def predict(self, R: np.ndarray, rank: int, alpha: float, intercept: bool = False) -> np.ndarray:
        rank = min(rank, self.max_rank(intercept))
        out = np.broadcast_to(self.mean, R.shape).copy()
        V = self.directions(rank, intercept)
        if V.shape[0] == 0:
            return out
        penalty = self.penalties(rank, alpha, intercept)
        for rows, cols in mask_groups(R):
            if cols.size == 0:
                continue
            X = V[:, cols].T
            y = R[np.ix_(rows, cols)] - self.mean[cols]
            a = np.linalg.solve(X.T @ X + np.diag(penalty), X.T @ y.T)
            out[rows] += a.T @ V
        return out


def _tails(s: np.ndarray) -> np.ndarray:
    """tails[r] = sum of s_k^2 for k >= r (r = 0..len(s))."""
    return np.concatenate([np.cumsum((s ** 2)[::-1])[::-1], [0.0]])


@register("lowrank")
class LowRankCompleter(Completer):
    """Posterior-mean fold-in on a low-rank basis of the training rows; rank and noise by CV."""

    def __init__(self, rank: int | None = None, noise_scale: float | None = None,
                 intercept: bool | None = None, cv_folds: int = 5, cv_draws: int = 3,
                 cv_observed: int = 30, random_state: int | None = 0) -> None:
        self.rank = rank
        self.noise_scale = noise_scale
        self.intercept = intercept
        self.cv_folds = cv_folds
        self.cv_draws = cv_draws
        self.cv_observed = cv_observed
        self.random_state = random_state  # seeds the cross-validation folds and reveals

    def check_params(self) -> None:
        self._check_int("rank", 0, optional=True)
        self._check_float("noise_scale", strict=True, optional=True)
        if self.intercept not in (None, True, False):
            raise self._bad("intercept", "True, False or None (chosen by cross-validation)")
        self._check_int("cv_folds", 2)
        self._check_int("cv_draws", 1)
        self._check_int("cv_observed", 1)
        self._check_int("random_state", 0, optional=True)

    def _fit(self, Z: np.ndarray) -> None:
        if np.isnan(Z).any():
            Z = fill_low_rank(Z, fit_biases(Z).baseline(), rank=5)
        self.basis_ = _Basis(Z)
        ranks = [self.rank] if self.rank is not None else [r for r in RANK_GRID if r <= Z.shape[0] - 1]
        alphas = [self.noise_scale] if self.noise_scale is not None else list(NOISE_GRID)
        intercepts = [self.intercept] if self.intercept is not None else [False, True]
        if len(ranks) * len(alphas) * len(intercepts) == 1 or Z.shape[0] < 3 or Z.shape[1] < 3:
            self.rank_ = ranks[min(len(ranks) - 1, 5)]
            self.noise_scale_, self.intercept_ = alphas[len(alphas) // 2], bool(intercepts[0])
            self.cv_scores_ = {}
            return
        self.cv_scores_ = self._cross_validate(Z, ranks, alphas, intercepts)
        self.rank_, self.noise_scale_, self.intercept_ = min(self.cv_scores_, key=self.cv_scores_.get)

    def _cross_validate(self, Z: np.ndarray, ranks: list[int], alphas: list[float],
                        intercepts: list[bool]) -> dict:
        """RMSE on unrevealed entries of held-out training rows for every (rank, alpha, intercept).

        Directions are orthogonal over all N columns, so the squared error over the unrevealed
        columns follows from d x d matrices: no N-sized product per configuration.
        """
        rng = np.random.default_rng(self.random_state)
        m, n = Z.shape
        folds = np.array_split(rng.permutation(m), min(self.cv_folds, m))
        k = max(1, min(self.cv_observed, n - 1))
        sse = {(r, a, i): 0.0 for r in ranks for a in alphas for i in intercepts}
        count = 0
        for held in folds:
            basis = _Basis(np.delete(Z, held, axis=0))
            truth = Z[held]
            resid0 = truth - basis.mean  # error of the mean prediction, negated
            designs = {i: basis.directions(basis.max_rank(i), i) for i in intercepts}
            for _ in range(self.cv_draws):
                cols = rng.choice(n, size=k, replace=False)
                count += held.size * (n - k)
                y = resid0[:, cols]
                e0 = float((resid0 ** 2).sum() - (y ** 2).sum())
                for icpt, full in designs.items():
                    Vc = full[:, cols]
                    gram_c, rhs = Vc @ Vc.T, Vc @ y.T
                    g_rest = np.diag((full ** 2).sum(axis=1)) - gram_c
                    b_rest = full @ resid0.T - rhs  # [d, rows]: directions . residual over unrevealed
                    for r in ranks:
                        d = min(r, basis.max_rank(icpt)) + int(icpt)
                        for a in alphas:
                            if d == 0:
                                sse[(r, a, icpt)] += e0
                                continue
                            pen = basis.penalties(r, a, icpt)
                            coef = np.linalg.solve(gram_c[:d, :d] + np.diag(pen), rhs[:d])
                            sse[(r, a, icpt)] += e0 - 2.0 * float((coef * b_rest[:d]).sum()) + \
                                float((coef * (g_rest[:d, :d] @ coef)).sum())
        return {key: float(np.sqrt(max(v, 0.0) / max(count, 1))) for key, v in sse.items()}

    def _predict(self, R: np.ndarray) -> np.ndarray:
        return self.basis_.predict(R, self.rank_, self.noise_scale_, self.intercept_)
