"""The forgetting matrix Z [M tasks x N upstream examples] and its .npz file contract.

File contract (docs/architecture.md), readable with ``numpy.load(path, allow_pickle=False)``:
``Z`` float32 [M, N] (NaN = not measured), ``tasks`` str [M], ``task_groups`` str [M],
``examples`` str [N], ``example_sources`` str [N], ``kind`` str scalar (``logppl`` | ``binary``),
optional ``base_nll`` float32 [N], and ``meta`` str scalar holding JSON.
Strings are numpy unicode arrays; object arrays are refused, a file is never unpickled.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmforget.atomic import atomic_path
from lmforget.errors import LmforgetError

KINDS = ("logppl", "binary")
REQUIRED_KEYS = ("Z", "tasks", "task_groups", "examples", "example_sources", "kind", "meta")
NAN_POLICY = ("infinite entries are refused; rows that are entirely NaN (tasks never measured) are dropped; then "
              "every column with a NaN in a remaining row is dropped; a seeded column subsample may follow; all "
              "numbers use the remaining complete matrix")


@dataclass(frozen=True)
class Completion:
    """What `ForgettingMatrix.complete` kept and left out, for reports and for callers that must refuse it."""

    rows: np.ndarray  # indices of the rows kept
    columns: np.ndarray  # indices of the columns kept, ascending
    rows_dropped: list[str]  # tasks never measured (every entry NaN), by name
    columns_dropped_nan: int  # upstream examples with a NaN in a measured row
    columns_available: int  # complete columns before the subsample


@dataclass
class ForgettingMatrix:
    """Z plus the row (task) and column (upstream example) metadata that give it meaning."""

    Z: np.ndarray
    tasks: np.ndarray
    task_groups: np.ndarray
    examples: np.ndarray
    example_sources: np.ndarray
    kind: str = "logppl"
    base_nll: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.Z = np.asarray(self.Z, dtype=np.float32)
        self.tasks = _as_str_array(self.tasks, "tasks")
        self.task_groups = _as_str_array(self.task_groups, "task_groups")
        self.examples = _as_str_array(self.examples, "examples")
        self.example_sources = _as_str_array(self.example_sources, "example_sources")
        if self.base_nll is not None:
            self.base_nll = np.asarray(self.base_nll, dtype=np.float32)
        self.validate()

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int]:
        return self.Z.shape  # type: ignore[return-value]

    def validate(self, source: str = "matrix") -> None:
        """Raise LmforgetError naming the first inconsistency."""
        if self.Z.ndim != 2:
            raise LmforgetError(f"{source}: Z must be 2-D [tasks, examples], got shape {self.Z.shape}")
        m, n = self.Z.shape
        for name, arr, want in (
            ("tasks", self.tasks, m),
            ("task_groups", self.task_groups, m),
            ("examples", self.examples, n),
            ("example_sources", self.example_sources, n),
        ):
            if arr.ndim != 1 or arr.shape[0] != want:
                raise LmforgetError(
                    f"{source}: '{name}' has length {arr.shape[0] if arr.ndim else 'scalar'}, "
                    f"expected {want} to match Z of shape {self.Z.shape}"
                )
        if self.base_nll is not None and self.base_nll.shape != (n,):
            raise LmforgetError(f"{source}: 'base_nll' has shape {self.base_nll.shape}, expected ({n},)")
        if self.kind not in KINDS:
            raise LmforgetError(f"{source}: 'kind' is {self.kind!r}, expected one of {', '.join(KINDS)}")
        if len(set(self.tasks.tolist())) != m:
            raise LmforgetError(f"{source}: task names are not unique")

    @classmethod
    def from_scores(cls, base, after: list, *, tasks, task_groups, examples, example_sources,
                    kind: str = "logppl", meta: dict[str, Any] | None = None) -> "ForgettingMatrix":
        """Z from per-example score tables (columns `nll`, and `correct` for the binary metric) of the
        base model (`base`) and of the model fine-tuned on each task (`after`, one table per task).

        logppl: Z_ij = NLL after - NLL before (nats/token), `base_nll` kept. binary: Z_ij = 1 where the
        base model answered example j correctly and the task-i model does not; only the examples the
        base model got right are columns (meta records how many of how many).
        """
        meta = dict(meta or {})
        examples, example_sources = np.asarray(examples), np.asarray(example_sources)
        if kind == "binary":
            keep = np.asarray(base["correct"], dtype=bool)
            Z = np.stack([~np.asarray(r["correct"], dtype=bool) for r in after]).astype(np.float32)[:, keep]
            base_nll = None
            meta.update(n_base_correct=int(keep.sum()), n_upstream=int(len(keep)))
            examples, example_sources = examples[keep], example_sources[keep]
        else:
            before = np.asarray(base["nll"], dtype=np.float64)
            Z = np.stack([np.asarray(r["nll"], dtype=np.float64) - before for r in after]).astype(np.float32)
            base_nll = before.astype(np.float32)
        return cls(Z=Z, tasks=tasks, task_groups=task_groups, examples=examples, example_sources=example_sources,
                   kind=kind, base_nll=base_nll, meta=meta)

    # ---------------------------------------------------------------- helpers
    @property
    def groups(self) -> list[str]:
        """Task groups in order of first appearance."""
        return list(dict.fromkeys(self.task_groups.tolist()))

    def rows(self, names: list[str] | np.ndarray) -> np.ndarray:
        """Row indices of the named tasks; unknown names are an input error."""
        index = {t: i for i, t in enumerate(self.tasks.tolist())}
        missing = [t for t in names if t not in index]
        if missing:
            raise LmforgetError(f"unknown task(s) {', '.join(map(str, missing[:5]))}: not rows of this matrix")
        return np.array([index[t] for t in names], dtype=np.int64)

    def subset(self, rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> "ForgettingMatrix":
        r = slice(None) if rows is None else rows
        c = slice(None) if cols is None else cols
        return ForgettingMatrix(
            Z=self.Z[r][:, c],
            tasks=self.tasks[r],
            task_groups=self.task_groups[r],
            examples=self.examples[c],
            example_sources=self.example_sources[c],
            kind=self.kind,
            base_nll=None if self.base_nll is None else self.base_nll[c],
            meta=dict(self.meta),
        )

    def complete(self, columns: int | None = None, seed: int = 0) -> tuple["ForgettingMatrix", Completion]:
        """The matrix every number is computed on (NAN_POLICY), and what was left out to get it.

        NaN marks an entry not measured: a task whose fine-tuning never finished (a whole row) or an
        example nothing of which could be scored (a whole column). Rows without any measured entry are
        dropped first, so that one such task does not empty the matrix; then every column with a NaN in a
        remaining row, so that every statistic and model sees the same entries. `columns` keeps a seeded
        random subset of the complete columns (in their order), the same one for the same seed.
        """
        Z = self.Z
        if Z.size and np.isinf(Z).any():
            i, j = np.argwhere(np.isinf(Z))[0]
            raise LmforgetError(f"Z holds an infinite value at row {i} ({self.tasks[i]}), column {j}; "
                                "use NaN for unmeasured entries")
        nan = np.isnan(Z)
        if nan.all():
            raise LmforgetError("Z has no measured entry (it is empty or entirely NaN)")
        empty = nan.all(axis=1)
        rows = np.flatnonzero(~empty)
        complete = ~nan[rows].any(axis=0)
        if not complete.any():
            raise LmforgetError("every column of Z has a NaN in some measured row: no complete columns "
                                "(drop the rows with missing scores or re-score them)")
        cols = np.flatnonzero(complete)
        if columns is not None:
            if columns < 2:
                raise LmforgetError(f"--columns must be at least 2, got {columns}")
            if columns < cols.size:
                cols = np.sort(np.random.default_rng(seed).choice(cols, size=columns, replace=False))
        how = Completion(rows=rows, columns=cols, rows_dropped=[str(t) for t in self.tasks[empty]],
                         columns_dropped_nan=int(Z.shape[1] - complete.sum()), columns_available=int(complete.sum()))
        return self.subset(rows, cols), how

    def summary(self) -> dict[str, Any]:
        """Headline numbers of the complete matrix (`complete`): mean forgetting, share of entries
        forgotten, most/least harmful task."""
        sub = self.complete()[0]
        Z = sub.Z
        row_means = Z.mean(axis=1, dtype=np.float64)
        order = np.argsort(-row_means)
        return {
            "shape": list(self.shape),
            "kind": self.kind,
            "mean": float(Z.mean(dtype=np.float64)),
            "share_positive": float((Z > 0).mean()),  # entries > 0 (forgotten): one name everywhere
            "most_harmful_task": {"task": str(sub.tasks[order[0]]), "mean": float(row_means[order[0]])},
            "least_harmful_task": {"task": str(sub.tasks[order[-1]]), "mean": float(row_means[order[-1]])},
            "task_means": {str(t): float(v) for t, v in zip(sub.tasks, row_means, strict=True)},
        }

    # --------------------------------------------------------------------- io
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "Z": self.Z.astype(np.float32),
            "tasks": self.tasks,
            "task_groups": self.task_groups,
            "examples": self.examples,
            "example_sources": self.example_sources,
            "kind": np.array(self.kind),
            "meta": np.array(json.dumps(self.meta, sort_keys=True, default=str)),
        }
        if self.base_nll is not None:
            arrays["base_nll"] = self.base_nll.astype(np.float32)
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ForgettingMatrix":
        """Load and validate a matrix file; every defect is an LmforgetError naming the file."""
        path = Path(path)
        if not path.is_file():
            raise LmforgetError(f"{path}: no such matrix file")
        try:
            with np.load(path, allow_pickle=False) as npz:
                data = {k: npz[k] for k in npz.files}
        except ValueError as exc:
            if "pickle" in str(exc).lower():
                raise LmforgetError(f"{path}: holds object arrays; refusing to unpickle "
                                    "(strings must be numpy unicode arrays)") from None
            raise LmforgetError(f"{path}: not a readable .npz matrix file ({exc})") from None
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise LmforgetError(f"{path}: not a readable .npz matrix file ({exc})") from None
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise LmforgetError(f"{path}: missing key(s) {', '.join(missing)}; "
                                f"a matrix file needs {', '.join(REQUIRED_KEYS)}")
        z = data["Z"]
        if z.dtype.kind != "f":
            raise LmforgetError(f"{path}: 'Z' has dtype {z.dtype}, expected float32")
        for key in ("tasks", "task_groups", "examples", "example_sources", "kind", "meta"):
            if data[key].dtype.kind != "U":
                raise LmforgetError(f"{path}: '{key}' has dtype {data[key].dtype}, expected a unicode string array")
        try:
            meta = json.loads(str(data["meta"]))
        except json.JSONDecodeError as exc:
            raise LmforgetError(f"{path}: 'meta' is not valid JSON ({exc})") from None
        base = data.get("base_nll")
        if base is not None and base.dtype.kind != "f":
            raise LmforgetError(f"{path}: 'base_nll' has dtype {base.dtype}, expected float32")
        m = cls.__new__(cls)
        m.Z = z.astype(np.float32, copy=False)
        m.tasks, m.task_groups = data["tasks"], data["task_groups"]
        m.examples, m.example_sources = data["examples"], data["example_sources"]
        m.kind, m.base_nll, m.meta = str(data["kind"]), base, meta
        m.validate(source=str(path))
        return m


def _as_str_array(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "O":
        arr = np.array([str(v) for v in arr.ravel()]).reshape(arr.shape) if arr.size else np.array([], dtype="U1")
    if arr.size == 0:
        return np.zeros(arr.shape, dtype="U1")
    if arr.dtype.kind != "U":
        arr = arr.astype(str)
    return arr
