"""Forecast one new task's forgetting of every upstream example from a few measured ones.

The practitioner's path: fine-tune on the new task, measure forgetting on ~30 upstream examples
(a probe file `id,forgetting`, see lmforget.probe), and get the full predicted row against a
collected matrix.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforget.errors import LmforgetError
from lmforget.matrix import ForgettingMatrix
from lmforget.predict.base import complete_row, get_completer


@dataclass
class Forecast:
    examples: np.ndarray  # upstream ids [N]
    forgetting: np.ndarray  # predicted (observed where measured) [N]
    observed: np.ndarray  # bool [N]
    method: str
    n_train_rows: int
    fallback: np.ndarray  # bool [N]: predicted from the prior alone (nothing known about the entry)


def forecast(matrix: ForgettingMatrix, probe_row: np.ndarray, method: str = "lowrank",
             train_groups: list[str] | None = None, seed: int = 0) -> Forecast:
    """Complete `probe_row` against the matrix's rows (or those of `train_groups`)."""
    get_completer(method)  # unknown names fail before any work
    rows = np.arange(matrix.Z.shape[0])
    if train_groups:
        bad = [g for g in train_groups if g not in matrix.groups]
        if bad:
            raise LmforgetError(f"--train-groups: unknown group(s) {', '.join(bad)}; "
                                f"the matrix has {', '.join(matrix.groups)}")
        rows = np.flatnonzero(np.isin(matrix.task_groups, train_groups))
    Z = matrix.Z[rows].astype(np.float64)
    empty = np.flatnonzero(np.isnan(Z).all(axis=1))
    if empty.size:
        raise LmforgetError(f"task(s) {', '.join(matrix.tasks[rows[empty]][:5])} have no measured entries (all NaN)")
    kind_ok = get_completer(method)
    if matrix.kind != "binary" and kind_ok.binary:
        raise LmforgetError(f"method {method!r} needs a binary matrix; this one is {matrix.kind}")
    pred, fallback = complete_row(Z, probe_row, method=method, seed=seed, return_fallback=True)
    return Forecast(examples=matrix.examples, forgetting=pred, observed=~np.isnan(probe_row),
                    method=method, n_train_rows=int(rows.size), fallback=fallback)


def write_forecast(result: Forecast, path: str | Path) -> None:
    """CSV `id, forgetting, observed` (observed = 1 where the value was measured), written atomically."""
    from lmforget.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "forgetting", "observed"])
            for ex, val, obs in zip(result.examples.tolist(), result.forgetting.tolist(), result.observed.tolist(),
                                    strict=True):
                w.writerow([ex, repr(float(val)), int(obs)])
