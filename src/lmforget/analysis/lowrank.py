"""How close the forgetting matrix is to low rank (docs/protocol.md section 4).

The exact SVD comes from the M x M Gram matrix G = Z Z^T (`lmforget.linalg`). Everything about
rank-k residuals follows from G alone: the rank-k truncation is Z_k = U_k U_k^T Z, so the squared residual of row i is
G_ii - sum_{l<=k} s_l^2 U_il^2, which gives overall, per-group and per-task R^2 for every k at once.

R^2(k) = 1 - mean((Z - Z_k)^2) / mean((Z - mean Z)^2), Z_k from the *uncentred* SVD.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmforget.linalg import gram, gram_eigh

_SMALL_FOR_THREADS = 1 << 22  # entries below which logistic MF runs on one thread
_CHUNK = 16_384  # columns per float64 block: bounds the extra memory to M x 16k doubles


@dataclass(frozen=True)
class Spectrum:
    """The exact thin SVD's left factor and spectrum, plus the Gram diagonal (row sums of squares)."""

    singular_values: np.ndarray  # [r] descending, r = min(M, N)
    U: np.ndarray  # [M, r] left singular vectors (columns), signs fixed by `orient`
    row_ss: np.ndarray  # [M] sum_j Z_ij^2

    def right_vectors(self, Z: np.ndarray, k: int) -> np.ndarray:
        """The first k right singular vectors as rows [k, N]: V_k^T = diag(1/s) U_k^T Z."""
        s = self.singular_values[:k]
        safe = np.where(s > 0, s, 1.0)
        out = (self.U[:, :k].T @ Z.astype(np.float64, copy=False)) / safe[:, None]
        out[s <= 0] = 0.0
        return out


def spectrum(Z: np.ndarray) -> Spectrum:
    """Exact singular values and left singular vectors of Z via eigh of its Gram matrix.

    Each component's sign is fixed so that its loadings sum to a non-negative number: component 1 of a
    forgetting matrix then reads as "task strength x example vulnerability" with positive signs.
    """
    G = gram(Z)
    sv, U = gram_eigh(G, Z.shape[1])
    signs = np.where(U.sum(axis=0) < 0, -1.0, 1.0)
    return Spectrum(singular_values=sv, U=U * signs, row_ss=np.diag(G).copy())


def row_residuals(spec: Spectrum, k_max: int) -> np.ndarray:
    """[k_max, M]: squared residual of each row after the rank-k truncation, k = 1..k_max."""
    explained = (spec.U[:, :k_max] ** 2) * (spec.singular_values[:k_max] ** 2)  # [M, k]
    res = spec.row_ss[None, :] - np.cumsum(explained, axis=1).T
    return np.clip(res, 0.0, None)


def total_ss(Z: np.ndarray, rows: np.ndarray | None = None) -> tuple[float, float, int]:
    """(sum of squares around the mean, the mean, count) of Z or of its selected rows, in float64."""
    sub = Z if rows is None else Z[rows]
    mean = float(sub.mean(dtype=np.float64))
    ss = 0.0
    for start in range(0, sub.shape[1], _CHUNK):
        block = sub[:, start:start + _CHUNK].astype(np.float64) - mean
        ss += float(np.einsum("ij,ij->", block, block))
    return ss, mean, sub.size


def r2_by_rank(Z: np.ndarray, spec: Spectrum, k_max: int,
               groups: dict[str, np.ndarray] | None = None) -> dict:
    """R^2 of rank-1..k_max truncations: overall, per group (rows of that group), and per task.

    A group's R^2 compares the global rank-k approximation on its rows with its own variance
    around its own mean, so it answers "how well does the shared low-rank structure fit this group".
    """
    res = row_residuals(spec, k_max)  # [k, M]
    ss_tot, _, _ = total_ss(Z)
    out = {"overall": (1.0 - res.sum(axis=1) / ss_tot).tolist()}
    if groups:
        out["by_group"] = {}
        for name, rows in groups.items():
            g_ss, _, _ = total_ss(Z, rows)
            out["by_group"][name] = (1.0 - res[:, rows].sum(axis=1) / g_ss).tolist() if g_ss > 0 else None
    row_mean = Z.mean(axis=1, dtype=np.float64)
    row_ss_centred = spec.row_ss - Z.shape[1] * row_mean ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        per_task = 1.0 - res / row_ss_centred[None, :]
    per_task[:, row_ss_centred <= 0] = np.nan
    out["by_task"] = per_task
    return out


def baseline_models(Z: np.ndarray) -> dict[str, float]:
    """R^2 of the additive, task-only and example-only least-squares models, in closed form.

    On a complete matrix the least-squares fits are the row/column means: task-only z = r_i,
    example-only z = c_j, additive z = r_i + c_j - mu. Their residual sums of squares follow from
    the two-way ANOVA decomposition SS_tot = SS_rows + SS_cols + SS_interaction.
    """
    m, n = Z.shape
    ss_tot, mu, _ = total_ss(Z)
    r = Z.mean(axis=1, dtype=np.float64)
    c = Z.mean(axis=0, dtype=np.float64)
    ss_rows = n * float(((r - mu) ** 2).sum())
    ss_cols = m * float(((c - mu) ** 2).sum())
    return {
        "additive": 1.0 - max(ss_tot - ss_rows - ss_cols, 0.0) / ss_tot,
        "task_only": ss_rows / ss_tot,
        "example_only": ss_cols / ss_tot,
    }


def logistic_mf(Y: np.ndarray, ranks: int = 5, seed: int = 0, l2: float = 1e-4,
                max_iter: int = 200) -> list[dict]:
    """Fit sigma(W H) to a 0/1 matrix for ranks 1..`ranks`; reconstruction F1 at 0.5 and more per rank.

    Loss = mean binary cross-entropy + l2/2 (|W|^2 / M + |H|^2 / N): the penalty is on the mean squared
    norm of a task vector and of an example vector, so `l2` means the same at any matrix size; it keeps
    perfectly separable entries from pushing the factors to infinity. No bias terms: sigma(W H) as in
    the paper. Full-batch L-BFGS (torch, float32, strong-Wolfe line search); rank r+1 starts from the
    rank-r solution plus a small seeded random column, so the ranks share most of the work.
    """
    import torch

    m, n = Y.shape
    threads = torch.get_num_threads()
    if m * n < _SMALL_FOR_THREADS:
        # small problems gain nothing from intra-op threads, and oversubscribed CPUs make them 10x slower
        torch.set_num_threads(1)
    try:
        return _logistic_mf(Y, ranks, seed, l2, max_iter)
    finally:
        torch.set_num_threads(threads)


def _logistic_mf(Y: np.ndarray, ranks: int, seed: int, l2: float, max_iter: int) -> list[dict]:
    import torch

    m, n = Y.shape
    y = torch.as_tensor(np.ascontiguousarray(Y, dtype=np.float32))
    truth = y > 0.5
    gen = torch.Generator().manual_seed(seed)
    W = torch.empty(m, 0)
    H = torch.empty(0, n)
    out = []
    for rank in range(1, ranks + 1):
        W = torch.cat([W, 0.1 * torch.randn(m, 1, generator=gen)], dim=1).requires_grad_(True)
        H = torch.cat([H, 0.1 * torch.randn(1, n, generator=gen)], dim=0).requires_grad_(True)
        evals = _lbfgs(W, H, y, l2, max_iter)
        W, H = W.detach(), H.detach()
        with torch.no_grad():
            logits = W @ H
            loss = float(torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
                         + 0.5 * l2 * ((W * W).sum() / m + (H * H).sum() / n))
            pred = logits > 0.0
        tp = float((pred & truth).sum())
        fp = float((pred & ~truth).sum())
        fn = float((~pred & truth).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append({"rank": rank, "f1": f1, "precision": precision, "recall": recall,
                    "accuracy": float((pred == truth).float().mean()), "loss": float(loss),
                    "evaluations": evals})
    return out


def _lbfgs(W, H, y, l2: float, max_iter: int) -> int:
    """Minimise the penalised logistic loss of sigma(W H) over W and H in place; returns the evaluations."""
    import torch

    m, n = y.shape
    opt = torch.optim.LBFGS([W, H], lr=1.0, max_iter=max_iter, tolerance_grad=1e-5,
                            tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")
    evals = 0

    def closure() -> torch.Tensor:
        # the objective times M N: the same minimiser, with gradients of a size L-BFGS's tolerances expect
        nonlocal evals
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(W @ H, y, reduction="sum") \
            + 0.5 * l2 * (n * (W * W).sum() + m * (H * H).sum())
        loss.backward()
        evals += 1
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return evals
