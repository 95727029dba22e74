"""Score sources for targeted replay: the predicted (or true) forgetting of each pool example.

- oracle: the true row of a previous run for the task (an upper bound on what prediction can give);
- offline: a completer fitted on the training rows, with k revealed entries of the task's row taken
  from a previous fine-tuning run on that task;
- online: the same completion, with the revealed entries measured mid-training (see `online.py`);
- file: a CSV with columns ``id,score`` (and optionally ``task``).
Higher score = forgotten more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from lmforget.errors import LmforgetError
from lmforget.predict.protocol import reveal_columns


def predict_row(Z_train: np.ndarray, columns: np.ndarray, values: np.ndarray, method: str,
                seed: int) -> np.ndarray:
    """Complete one row from `values` observed at `columns` with the named completer."""
    from lmforget.predict import complete_row

    Z_train = np.asarray(Z_train, dtype=np.float64)
    revealed = np.full(Z_train.shape[1], np.nan)
    revealed[np.asarray(columns)] = np.asarray(values, dtype=np.float64)
    if np.isnan(revealed[np.asarray(columns)]).any():
        raise LmforgetError("a revealed entry is undefined (NaN); reveal only examples with defined scores")
    return complete_row(Z_train, revealed, method=method, seed=seed)


def offline_scores(Z_train: np.ndarray, true_row: np.ndarray, candidates: np.ndarray, k: int, method: str,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(predicted row, revealed columns): reveal `k` entries of a previous run's row, complete the rest."""
    cols = reveal_columns(candidates, k, seed)
    return predict_row(Z_train, cols, np.asarray(true_row)[cols], method, seed), cols


def read_score_file(path: str | Path, ids: Sequence[str], task: str | None = None) -> np.ndarray:
    """Scores for `ids` from a CSV ``id,score`` (rows of `task` only if it has a ``task`` column).

    Ids the file does not cover get NaN (they cannot be ranked and are left out of the pool).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise LmforgetError(f"score file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype={"id": str, "task": str})
    except (ValueError, OSError) as exc:
        raise LmforgetError(f"{path}: not a readable CSV ({exc})".replace("\n", " ")) from None
    for col in ("id", "score"):
        if col not in frame.columns:
            raise LmforgetError(f"{path}: missing column {col!r} (expected id,score and optionally task)")
    if "task" in frame.columns and task is not None:
        frame = frame[frame["task"] == task]
        if frame.empty:
            raise LmforgetError(f"{path}: no rows for task {task!r}")
    if frame["id"].duplicated().any():
        dup = frame.loc[frame["id"].duplicated(), "id"].iloc[0]
        raise LmforgetError(f"{path}: id {dup!r} appears twice")
    scores = pd.to_numeric(frame["score"], errors="coerce")
    if scores.isna().any():
        raise LmforgetError(f"{path}: column 'score' holds a non-numeric value (row {int(scores.isna().idxmax()) + 2})")
    lookup = pd.Series(scores.to_numpy(np.float64), index=frame["id"].to_numpy())
    return lookup.reindex(list(ids)).to_numpy(np.float64)
