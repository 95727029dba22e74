"""One call from a ForgettingMatrix to every number of the low-rank analysis (docs/protocol.md section 4).

Every number is computed on `ForgettingMatrix.complete` (its NAN_POLICY, the one that predict and
similarity apply too): tasks never measured are dropped and named, columns with a NaN left are dropped
and counted, and an optional seeded column subsample (`columns`, `seed`) follows, so every model is fitted
on exactly the same entries.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from lmforget.analysis import attribution, lowrank, stats
from lmforget.atomic import finite
from lmforget.errors import LmforgetError
from lmforget.matrix import NAN_POLICY, Completion, ForgettingMatrix

SCHEMA = 1


class Analysis(dict):
    """What `analyze` returns: the JSON-ready numbers (this dict, exactly what analysis.json holds),
    plus the arrays the figures are drawn from, so a report never re-cleans Z or recomputes its SVD.

    `cleaned` is the complete matrix analysed; `U` [M, k] and `V` [k, N] are the first k = settings.components
    left and right singular vectors of `cleaned.Z` (V as rows), with the signs of `components`.
    """

    def __init__(self, numbers: dict[str, Any], cleaned: ForgettingMatrix, U: np.ndarray, V: np.ndarray) -> None:
        super().__init__(numbers)
        self.cleaned, self.U, self.V = cleaned, U, V


def analysable(matrix: ForgettingMatrix, columns: int | None = None,
               seed: int = 0) -> tuple[ForgettingMatrix, Completion]:
    """`matrix.complete(columns, seed)`, refused when it leaves nothing to analyse."""
    c, how = matrix.complete(columns, seed)
    m, n = c.shape
    if m < 2 or n < 2:
        raise LmforgetError(f"after dropping NaN, Z is {m} x {n}; the analysis needs at least 2 tasks and 2 examples")
    if float(c.Z.std(dtype=np.float64)) == 0.0:
        raise LmforgetError("Z is constant after dropping NaN: R^2 is undefined")
    return c, how


def analyze(matrix: ForgettingMatrix, ranks: int = 10, *, columns: int | None = None, seed: int = 0,
            components: int = 4, top: int = 10, top_share: float = 0.05,
            logistic_ranks: int = 5, clip: float = 0.5, source: str | None = None) -> Analysis:
    """Every number of the low-rank analysis as one JSON-ready dict (see the package docstring)."""
    if ranks < 1:
        raise LmforgetError(f"--ranks must be at least 1, got {ranks}")
    if not clip > 0:
        raise LmforgetError(f"--clip must be positive, got {clip}")
    t0 = time.perf_counter()
    c, how = analysable(matrix, columns=columns, seed=seed)
    Z = np.ascontiguousarray(c.Z)
    m, n = Z.shape
    binary = matrix.kind == "binary"
    if binary and not np.isin(Z, (0.0, 1.0)).all():
        raise LmforgetError("kind is 'binary' but Z holds values other than 0 and 1")
    k_max = min(ranks, m, n)
    n_comp = min(components, k_max)

    spec = lowrank.spectrum(Z)
    groups = {g: np.flatnonzero(c.task_groups == g) for g in c.groups}
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
            "rows_dropped_all_nan": how.rows_dropped,
            "columns_dropped_nan": how.columns_dropped_nan,
            "columns_available": how.columns_available,
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
