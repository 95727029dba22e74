"""Import the paper's released statistics into our matrix files and JSON splits.

Released layout (AuCson/low-rank-forgetting, stats.zip):
* `<name>-ppl-inc<...>.npy`: float array [M, N], log-ppl increase, NaN columns already removed;
  beside it `<file>.npy.meta` (JSON): {group: {"start": int, "stop": int, "tasks": [names] | null}}.
* `fpd-split-*.pkl`: a pickled dict with `train_ocl_idxs`, `test_ocl_idxs` (lists of int),
  `train_mat`, `test_mat` (numpy arrays), `train_ocl_task_info`, `test_ocl_task_info` (lists of
  {"cat", "name", "split"}) and `pt_task_info`.
Pickles are read by `PlainDataUnpickler`, which can build numpy arrays, lists, dicts, strings and
numbers and nothing else, so a hostile file cannot run code. Everything is read and checked
before the first file is written.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from lmforget.errors import LmforgetError
from lmforget.matrix import ForgettingMatrix

#: The only globals a plain-data pickle may name: numpy's array/scalar rebuilders and dtypes.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles carry array bytes as latin-1 text
}
_CAT_TO_GROUP = {"tulu_train": "tulu"}


class PlainDataUnpickler(pickle.Unpickler):
    """Admits numpy arrays, lists, dicts, tuples, strings, numbers, booleans and None only."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise LmforgetError(f"{self._source}: pickle refers to {module}.{name}; only plain data "
                            "(numpy arrays, lists, dicts, strings, numbers) is accepted")


def load_plain_pickle(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = PlainDataUnpickler(fh, str(path)).load()
    except LmforgetError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OSError) as exc:
        raise LmforgetError(f"{path}: not a readable plain-data pickle ({type(exc).__name__}: {exc})") from None
    _check_plain(obj, str(path))
    return obj


def _check_plain(obj: Any, source: str, depth: int = 0) -> None:
    if depth > 20:
        raise LmforgetError(f"{source}: nested too deeply for a split file")
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "O":
            for item in obj.ravel():
                _check_plain(item, source, depth + 1)
        return
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, np.generic)):
        return
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _check_plain(item, source, depth + 1)
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            _check_plain(key, source, depth + 1)
            _check_plain(value, source, depth + 1)
        return
    raise LmforgetError(f"{source}: holds a {type(obj).__name__}; only plain data is accepted")


def _read_matrix(path: Path, root: Path) -> ForgettingMatrix:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise LmforgetError(f"{path}: not a plain numeric .npy array ({exc})") from None
    if arr.ndim != 2 or arr.dtype.kind not in "fiu":
        raise LmforgetError(f"{path}: expected a 2-D numeric array [tasks, examples], got {arr.dtype} {arr.shape}")
    m, n = arr.shape
    meta_path = next((p for p in (Path(str(path) + ".meta"), path.with_suffix(".meta")) if p.is_file()), None)
    groups = ["unknown"] * m
    names = [f"task_{i}" for i in range(m)]
    if meta_path is not None:
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise LmforgetError(f"{meta_path}: not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise LmforgetError(f"{meta_path}: expected an object {{group: {{start, stop, tasks}}}}")
        for group, info in meta.items():
            try:
                start, stop = int(info["start"]), int(info["stop"])
            except (TypeError, KeyError, ValueError):
                raise LmforgetError(f"{meta_path}: group {group!r} needs integer 'start' and 'stop'") from None
            if not 0 <= start <= stop <= m:
                raise LmforgetError(f"{meta_path}: group {group!r} rows {start}:{stop} lie outside "
                                    f"the {m} rows of {path.name}")
            tasks = info.get("tasks") if isinstance(info, dict) else None
            for i in range(start, stop):
                groups[i] = str(group)
                ok = isinstance(tasks, list) and len(tasks) == stop - start
                names[i] = str(tasks[i - start]) if ok else f"{group}_{i - start}"
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    names = [f"{g}/{t}" if seen[t] > 1 else t for t, g in zip(names, groups, strict=True)]
    if len(set(names)) != m:
        names = [f"{g}/{i}" for i, g in enumerate(groups)]
    return ForgettingMatrix(
        Z=arr.astype(np.float32), tasks=names, task_groups=groups,
        examples=[f"ex{j:06d}" for j in range(n)], example_sources=["unknown"] * n, kind="logppl",
        meta={"source": "import-reference", "file": str(path.relative_to(root)),
              "note": "released log-ppl increase; NaN columns were removed upstream, example ids are positions"},
    )


def _row_keys(rows: np.ndarray) -> list[bytes]:
    return [np.ascontiguousarray(r, dtype=np.float32).tobytes() for r in rows]


def _split_from_pickle(path: Path, obj: Any, matrices: dict[Path, ForgettingMatrix]) -> tuple[dict, Path]:
    if not isinstance(obj, dict):
        raise LmforgetError(f"{path}: expected a dict split (train_mat, test_mat, ...), got {type(obj).__name__}")
    # 1) by content: rows of train_mat/test_mat are rows of one released matrix
    mats = [obj.get("train_mat"), obj.get("test_mat")]
    if all(isinstance(x, np.ndarray) and x.ndim == 2 for x in mats):
        ordered = sorted(matrices.items(), key=lambda kv: (kv[0].parent != path.parent, str(kv[0])))
        for mpath, fm in ordered:
            if fm.Z.shape[1] != mats[0].shape[1]:
                continue
            lookup = {k: i for i, k in enumerate(_row_keys(fm.Z))}
            idx = [[lookup.get(k) for k in _row_keys(x)] for x in mats]
            if all(i is not None for part in idx for i in part):
                return {"spec": f"reference:{path.name}",
                        "train": [str(fm.tasks[i]) for i in idx[0]],
                        "test": [str(fm.tasks[i]) for i in idx[1]]}, mpath
    # 2) by name: task_info entries {"cat", "name"} against a matrix's (group, task)
    infos = [obj.get("train_ocl_task_info"), obj.get("test_ocl_task_info")]
    if all(isinstance(x, list) for x in infos):
        for mpath, fm in sorted(matrices.items(), key=lambda kv: (kv[0].parent != path.parent, str(kv[0]))):
            by_key = {(g, t.rsplit("/", 1)[-1]): t
                      for t, g in zip(fm.tasks.tolist(), fm.task_groups.tolist(), strict=True)}
            parts = []
            for part in infos:
                names = []
                for info in part:
                    if not isinstance(info, dict):
                        break
                    cat = str(info.get("cat"))
                    key = (_CAT_TO_GROUP.get(cat, cat), str(info.get("name")))
                    if key not in by_key:
                        break
                    names.append(by_key[key])
                else:
                    parts.append(names)
                    continue
                break
            if len(parts) == 2:
                return {"spec": f"reference:{path.name}", "train": parts[0], "test": parts[1]}, mpath
    raise LmforgetError(f"{path}: its rows match no imported *-ppl-inc*.npy matrix by content or by task name")


def import_reference(src: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Convert every released matrix and split under `src`; returns what was written."""
    src, out_dir = Path(src), Path(out_dir)
    if not src.is_dir():
        raise LmforgetError(f"{src}: no such directory")
    npys = sorted(p for p in src.rglob("*-ppl-inc*.npy") if p.is_file())
    if not npys:
        raise LmforgetError(f"{src}: no '*-ppl-inc*.npy' files found")
    matrices = {p: _read_matrix(p, src) for p in npys}
    splits = []
    for pkl in sorted(p for p in src.rglob("*.pkl") if p.is_file()):
        obj = load_plain_pickle(pkl)
        split, mpath = _split_from_pickle(pkl, obj, matrices)
        splits.append((pkl, split, mpath))
    written: dict[str, Any] = {"matrices": [], "splits": []}
    out_of = {p: out_dir / p.relative_to(src).with_suffix(".npz") for p in npys}
    for p, fm in matrices.items():
        fm.save(out_of[p])
        written["matrices"].append({"file": str(out_of[p]), "shape": list(fm.Z.shape), "groups": fm.groups})
    from lmforget.atomic import write_json

    for pkl, split, mpath in splits:
        target = out_dir / pkl.relative_to(src).with_suffix(".json")
        split["matrix"] = str(out_of[mpath])
        write_json(target, split)
        written["splits"].append({"file": str(target), "matrix": str(out_of[mpath]),
                                  "n_train": len(split["train"]), "n_test": len(split["test"])})
    return written
