"""One call from a ForgettingMatrix to every number of the low-rank analysis (docs/protocol.md section 4).

NaN policy, applied identically everywhere: rows that are entirely NaN (tasks never measured) are
dropped and named; then every column (upstream example) with any NaN left is dropped and counted.
All statistics, R^2 values and figures use the remaining complete matrix, so every model is fitted
on exactly the same entries. An optional reproducible column subsample (`columns`, `seed`) follows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmforget.analysis import attribution, lowrank, stats
from lmforget.atomic import finite
from lmforget.errors import LmforgetError
from lmforget.matrix import ForgettingMatrix

SCHEMA = 1
NAN_POLICY = ("rows that are entirely NaN are dropped; then every column with any NaN is dropped; "
              "all numbers use the remaining complete matrix")


@dataclass
class Cleaned:
    """The complete (NaN-free) float32 matrix analysed, with the labels of its rows and columns."""

    Z: np.ndarray
    tasks: np.ndarray
    task_groups: np.ndarray
    examples: np.ndarray
    example_sources: np.ndarray
    rows_dropped: list[str]
    columns_dropped_nan: int
    columns_available: int
    base_nll: np.ndarray | None = None  # the base model's NLL of each kept column, when the matrix has it

    @property
    def groups(self) -> dict[str, np.ndarray]:
        """Row indices of each task group, groups in order of first appearance."""
        names = list(dict.fromkeys(self.task_groups.tolist()))
        return {g: np.flatnonzero(self.task_groups == g) for g in names}


class Analysis(dict):
    """What `analyze` returns: the JSON-ready numbers (this dict, exactly what analysis.json holds),
    plus the arrays the figures are drawn from, so a report never re-cleans Z or recomputes its SVD.

    `cleaned` is the matrix analysed; `U` [M, k] and `V` [k, N] are the first k = settings.components
    left and right singular vectors of `cleaned.Z` (V as rows), with the signs of `components`.
    """

    def __init__(self, numbers: dict[str, Any], cleaned: Cleaned, U: np.ndarray, V: np.ndarray) -> None:
        super().__init__(numbers)
        self.cleaned, self.U, self.V = cleaned, U, V


def clean_matrix(matrix: ForgettingMatrix, columns: int | None = None, seed: int = 0) -> Cleaned:
    """Apply the NaN policy and the optional column subsample; refuse matrices with nothing to analyse."""
    Z = np.asarray(matrix.Z)
    if Z.dtype.kind != "f":
        raise LmforgetError(f"Z has dtype {Z.dtype}; expected float32")
    if Z.ndim != 2 or Z.size == 0:
        raise LmforgetError(f"Z has shape {Z.shape}; expected a non-empty 2-D [tasks, examples] matrix")
    if np.isinf(Z).any():
        i, j = np.argwhere(np.isinf(Z))[0]
        raise LmforgetError(f"Z holds an infinite value at row {i} ({matrix.tasks[i]}), column {j}; "
                            "use NaN for unmeasured entries")
    nan = np.isnan(Z)
    if nan.all():
        raise LmforgetError("Z is entirely NaN: no measured entries to analyse")
    empty_rows = nan.all(axis=1)
    keep_rows = np.flatnonzero(~empty_rows)
    col_ok = ~nan[keep_rows].any(axis=0)
    if not col_ok.any():
        raise LmforgetError("every column of Z has a NaN in some measured row: no complete columns to "
                            "analyse (drop the rows with missing scores or re-score them)")
    cols = np.flatnonzero(col_ok)
    available = len(cols)
    if columns is not None:
        if columns < 2:
            raise LmforgetError(f"--columns must be at least 2, got {columns}")
        if columns < available:
            rng = np.random.default_rng(seed)
            cols = np.sort(rng.choice(cols, size=columns, replace=False))
    if len(keep_rows) < 2 or len(cols) < 2:
        raise LmforgetError(f"after dropping NaN, Z is {len(keep_rows)} x {len(cols)}; "
                            "the analysis needs at least 2 tasks and 2 examples")
    sub = np.ascontiguousarray(Z[np.ix_(keep_rows, cols)], dtype=np.float32)
    if float(sub.std(dtype=np.float64)) == 0.0:
        raise LmforgetError("Z is constant after dropping NaN: R^2 is undefined")
    return Cleaned(
        Z=sub, tasks=matrix.tasks[keep_rows], task_groups=matrix.task_groups[keep_rows],
        examples=matrix.examples[cols], example_sources=matrix.example_sources[cols],
        rows_dropped=[str(t) for t in matrix.tasks[empty_rows]],
        columns_dropped_nan=int(Z.shape[1] - int(col_ok.sum())), columns_available=available,
        base_nll=None if matrix.base_nll is None else np.asarray(matrix.base_nll, dtype=np.float32)[cols],
    )


def analyze(matrix: ForgettingMatrix, ranks: int = 10, *, columns: int | None = None, seed: int = 0,
            components: int = 4, top: int = 10, top_share: float = 0.05,
            logistic_ranks: int = 5, clip: float = 0.5, source: str | None = None) -> Analysis:
    """Every number of the low-rank analysis as one JSON-ready dict (see the package docstring)."""
    if ranks < 1:
        raise LmforgetError(f"--ranks must be at least 1, got {ranks}")
    if not clip > 0:
        raise LmforgetError(f"--clip must be positive, got {clip}")
    t0 = time.perf_counter()
    c = clean_matrix(matrix, columns=columns, seed=seed)
    Z = c.Z
    m, n = Z.shape
    binary = matrix.kind == "binary"
    if binary and not np.isin(Z, (0.0, 1.0)).all():
        raise LmforgetError("kind is 'binary' but Z holds values other than 0 and 1")
    k_max = min(ranks, m, n)
    n_comp = min(components, k_max)

    spec = lowrank.spectrum(Z)
    groups = c.groups
    r2 = lowrank.r2_by_rank(Z, spec, k_max, groups=groups)
    models = lowrank.baseline_models(Z)
    models["multiplicative"] = r2["overall"][0]
    sv = spec.singular_values
    energy = np.cumsum(sv ** 2) / float((sv ** 2).sum())
    V = spec.right_vectors(Z, n_comp)
    comps = attribution.component_attribution(
        spec.U, V, sv, c.tasks, c.task_groups, c.examples, c.example_sources,
        n_components=n_comp, top=top, top_share=top_share)

    logistic = None
    if binary:
        logistic = {
            "l2": 1e-4, "max_iter": 200, "seed": seed, "threshold": 0.5,
            "by_rank": lowrank.logistic_mf(Z, min(logistic_ranks, m, n), seed=seed, l2=1e-4, max_iter=200),
        }

    result: dict[str, Any] = {
        "schema": SCHEMA,
        "input": {
            "source": source,
            "kind": matrix.kind,
            "shape": [int(s) for s in matrix.Z.shape],
            "analysed_shape": [m, n],
            "rows_dropped_all_nan": c.rows_dropped,
            "columns_dropped_nan": c.columns_dropped_nan,
            "columns_available": c.columns_available,
            "subsample": None if columns is None else {"columns": columns, "seed": seed},
            "nan_policy": NAN_POLICY,
            "meta": matrix.meta,
        },
        "settings": {"ranks": k_max, "ranks_requested": ranks, "components": n_comp, "top": top,
                     "top_share": top_share, "clip": clip, "seed": seed},
        "r2_by_rank": r2["overall"],
        "r2_by_rank_by_group": r2.get("by_group", {}),
        "r2_by_rank_by_task": {str(t): r2["by_task"][:, i].tolist() for i, t in enumerate(c.tasks)},
        "models": {k: models[k] for k in ("additive", "multiplicative", "example_only", "task_only")},
        "singular_values": sv.tolist(),
        "explained_energy": energy.tolist(),
        "stats": {
            **stats.summary(Z),
            "by_group": stats.by_group(Z, list(groups), c.task_groups),
            "by_source": stats.by_source(Z, c.example_sources),
            "by_task": stats.by_task(Z, c.tasks, c.task_groups),
        },
        "components": comps,
        "logistic_mf": logistic,
    }
    result["timing"] = {"analysis_s": round(time.perf_counter() - t0, 3)}
    return Analysis(finite(result), c, spec.U[:, :n_comp], V)
