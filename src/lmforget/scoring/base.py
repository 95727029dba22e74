"""What every scoring backend returns, and how per-example scores are written to disk.

The per-example score table (`id, nll, n_tokens`) is a file contract (docs/architecture.md): mean NLL in nats
over exactly the scored positions of lmforget.encoding, NaN with n_tokens = 0 when nothing is scored.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from lmforget.atomic import atomic_path
from lmforget.data.types import UpstreamExample
from lmforget.errors import LmforgetError
from lmforget.registry import Registry

SCORE_COLUMNS = ("id", "nll", "n_tokens")
SCORE_SUFFIXES = (".csv", ".parquet")
SCORERS: Registry[type] = Registry("scoring backend")  # name -> class(model, tokenizer=..., **options)


@dataclass(frozen=True)
class ScoreResult:
    """Mean NLL (nats/token) of one example over its `n_tokens` scored tokens; NaN when n_tokens == 0."""

    id: str
    nll: float
    n_tokens: int

    @property
    def defined(self) -> bool:
        return self.n_tokens > 0 and not math.isnan(self.nll)


@runtime_checkable
class Scorer(Protocol):
    """A backend that scores upstream examples; results come back in input order."""

    def score(self, examples: Sequence[UpstreamExample]) -> list[ScoreResult]: ...


def results_arrays(results: Sequence[ScoreResult]) -> tuple[np.ndarray, np.ndarray]:
    """(nll float64 [N], n_tokens int64 [N]) in the order of `results`."""
    nll = np.fromiter((r.nll for r in results), dtype=np.float64, count=len(results))
    n = np.fromiter((r.n_tokens for r in results), dtype=np.int64, count=len(results))
    return nll, n


def results_frame(results: Sequence[ScoreResult]):
    """A pandas DataFrame with the columns of the score-file contract."""
    import pandas as pd

    nll, n = results_arrays(results)
    return pd.DataFrame({"id": [r.id for r in results], "nll": nll, "n_tokens": n})


def check_score_path(path: str | os.PathLike) -> Path:
    """Validate an output path before any work is done (bad extension is a user error)."""
    p = Path(path)
    if p.suffix.lower() not in SCORE_SUFFIXES:
        raise LmforgetError(f"--out {p}: unsupported extension {p.suffix or '(none)'!r} (use .csv or .parquet)")
    if p.exists() and p.is_dir():
        raise LmforgetError(f"--out {p} is a directory (give a .csv or .parquet file path)")
    return p


def write_scores(results: Sequence[ScoreResult], path: str | os.PathLike) -> Path:
    """Write `id, nll, n_tokens` atomically as CSV or Parquet (by extension)."""
    p = check_score_path(path)
    df = results_frame(results)
    with atomic_path(p) as tmp:
        if p.suffix.lower() == ".csv":
            df.to_csv(tmp, index=False, float_format="%.9g")
        else:
            df.to_parquet(tmp, index=False)
    return p


def read_scores(path: str | os.PathLike):
    """Read a score table back (CSV or Parquet) and check its columns."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise LmforgetError(f"score file {p} does not exist")
    df = pd.read_csv(p, dtype={"id": str}) if p.suffix.lower() == ".csv" else pd.read_parquet(p)
    missing = [c for c in SCORE_COLUMNS if c not in df.columns]
    if missing:
        raise LmforgetError(f"score file {p}: missing column(s) {', '.join(missing)}")
    return df
