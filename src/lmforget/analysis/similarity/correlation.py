"""How a similarity matrix relates to the forgetting matrix: alignment and correlation statistics."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lmforget.errors import LmforgetError


def correlate(similarity: np.ndarray, Z: np.ndarray) -> dict[str, Any]:
    """Pearson and Spearman between a similarity matrix and Z: over all entries finite in both,
    and the mean of per-row (per-task) correlations across examples."""
    from scipy import stats

    if similarity.shape != Z.shape:
        raise LmforgetError(f"similarity has shape {similarity.shape}, Z has {Z.shape}")
    ok = np.isfinite(similarity) & np.isfinite(Z)
    s, z = similarity[ok].astype(np.float64), Z[ok].astype(np.float64)
    out: dict[str, Any] = {"n_entries": int(ok.sum()), "pearson": None, "spearman": None,
                           "pearson_row_mean": None, "spearman_row_mean": None, "rows": 0}
    if len(s) >= 3 and s.std() > 0 and z.std() > 0:
        out["pearson"] = float(stats.pearsonr(s, z)[0])
        out["spearman"] = float(stats.spearmanr(s, z)[0])
    pr, sr = [], []
    for i in range(Z.shape[0]):
        row = ok[i]
        si, zi = similarity[i, row].astype(np.float64), Z[i, row].astype(np.float64)
        if len(si) >= 3 and si.std() > 0 and zi.std() > 0:
            pr.append(stats.pearsonr(si, zi)[0])
            sr.append(stats.spearmanr(si, zi)[0])
    if pr:
        out.update(pearson_row_mean=float(np.mean(pr)), spearman_row_mean=float(np.mean(sr)), rows=len(pr))
    return out


def align(similarity: np.ndarray, task_names: list[str], example_ids: list[str],
          matrix_tasks: Sequence[str], matrix_examples: Sequence[str]) -> np.ndarray:
    """Reorder a similarity matrix to the matrix's rows/columns; pairs it lacks become NaN."""
    out = np.full((len(matrix_tasks), len(matrix_examples)), np.nan)
    r = {t: i for i, t in enumerate(task_names)}
    c = {e: j for j, e in enumerate(example_ids)}
    rows = np.array([r.get(str(t), -1) for t in matrix_tasks])
    cols = np.array([c.get(str(e), -1) for e in matrix_examples])
    if (rows < 0).all() or (cols < 0).all():
        raise LmforgetError("the run's tasks/upstream examples do not match the matrix rows/columns")
    out[np.ix_(rows >= 0, cols >= 0)] = similarity[np.ix_(rows[rows >= 0], cols[cols >= 0])]
    return out
