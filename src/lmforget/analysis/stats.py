"""Descriptive statistics of a forgetting matrix: how much is forgotten, by whom, of what.

Every function takes the cleaned float matrix (no NaN) plus its row/column labels and returns
plain JSON-ready numbers, so the report and `--json` output share one source.
"""

from __future__ import annotations

import numpy as np

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def summary(Z: np.ndarray) -> dict:
    """Mean, spread, share of entries > 0 (forgotten) and quantiles of all entries."""
    flat = Z.ravel()
    q = np.quantile(flat, QUANTILES)
    return {
        "mean": float(flat.mean(dtype=np.float64)),
        "std": float(flat.std(dtype=np.float64)),
        "min": float(flat.min()),
        "max": float(flat.max()),
        "share_positive": float((flat > 0).mean()),
        "quantiles": {f"{p:g}": float(v) for p, v in zip(QUANTILES, q, strict=True)},
    }


def by_group(Z: np.ndarray, groups: list[str], task_groups: np.ndarray) -> dict[str, dict]:
    """Per task group: number of tasks, mean forgetting, share of entries > 0 (groups in given order)."""
    out = {}
    for g in groups:
        rows = task_groups == g
        sub = Z[rows]
        out[g] = {"n_tasks": int(rows.sum()), "mean": float(sub.mean(dtype=np.float64)),
                  "share_positive": float((sub > 0).mean())}
    return out


def by_task(Z: np.ndarray, tasks: np.ndarray, task_groups: np.ndarray) -> list[dict]:
    """One record per task (row): how strongly fine-tuning on it makes the model forget."""
    means = Z.mean(axis=1, dtype=np.float64)
    pos = (Z > 0).mean(axis=1)
    return [{"task": str(t), "group": str(g), "mean": float(m), "share_positive": float(p)}
            for t, g, m, p in zip(tasks, task_groups, means, pos, strict=True)]


def by_source(Z: np.ndarray, example_sources: np.ndarray) -> dict[str, dict]:
    """Per upstream source (e.g. Dolma domain): number of examples, mean forgetting, share > 0."""
    labels, inverse = np.unique(example_sources, return_inverse=True)
    col_mean = Z.mean(axis=0, dtype=np.float64)
    col_pos = (Z > 0).mean(axis=0)
    counts = np.bincount(inverse, minlength=len(labels))
    sums = np.bincount(inverse, weights=col_mean, minlength=len(labels))
    pos = np.bincount(inverse, weights=col_pos, minlength=len(labels))
    return {str(lab): {"n": int(c), "mean": float(s / c), "share_positive": float(p / c)}
            for lab, c, s, p in zip(labels, counts, sums, pos, strict=True)}
