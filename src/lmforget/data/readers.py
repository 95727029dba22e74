"""Local files and Hugging Face data sets -> a stream of (record, where) pairs.

Every record travels with a `where` string ("shard.jsonl.gz, line 12") so that an adapter can say
exactly which file and row a problem comes from. Readers stream: a Dolma shard or a Parquet file
is never held in memory whole.
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from lmforget.errors import LmforgetError

Record = dict[str, Any]

# File suffix -> reader kind. `.json.gz` and `.jsonl.gz` are checked before the bare suffixes.
SUFFIXES = {
    ".jsonl.gz": "jsonl",
    ".ndjson.gz": "jsonl",
    ".json.gz": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}
FILE_TYPES = ("jsonl", "json", "parquet", "csv")


def file_type(path: str | os.PathLike) -> str:
    """The reader kind for a file name, or a LmforgetError naming the accepted suffixes."""
    name = Path(path).name.lower()
    for suffix, kind in SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    raise LmforgetError(
        f"{path}: unknown file type; expected one of {', '.join(SUFFIXES)} "
        "(or a directory saved with datasets' save_to_disk)"
    )


def expand_paths(path: str | os.PathLike, kinds: Iterable[str] = FILE_TYPES) -> list[Path]:
    """A file, a directory (its data files, sorted) or a glob pattern -> existing files, in order."""
    text = os.fspath(path)
    kinds = tuple(kinds)
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise LmforgetError(f"{text}: the pattern matches no files")
        return files
    p = Path(text).expanduser()
    if p.is_dir():
        files = sorted(
            f for f in p.rglob("*") if f.is_file() and _kind_or_none(f) in kinds
        )
        if not files:
            raise LmforgetError(f"{p}: the directory holds no {'/'.join(kinds)} files")
        return files
    if not p.exists():
        raise LmforgetError(f"{p}: no such file or directory")
    return [p]


def _kind_or_none(path: Path) -> str | None:
    try:
        return file_type(path)
    except LmforgetError:
        return None


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8", newline="")


def iter_jsonl(path: Path) -> Iterator[tuple[Record, str]]:
    """One JSON object per line; blank lines are skipped; a bad line names its number."""
    with _open_text(path) as fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{path}, line {lineno}"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LmforgetError(f"{where}: malformed JSON ({exc.msg}, column {exc.colno})") from None
                if not isinstance(obj, dict):
                    raise LmforgetError(f"{where}: expected a JSON object, got {type(obj).__name__}")
                yield obj, where
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise LmforgetError(f"{path}: cannot read ({exc})") from None


def iter_json(path: Path, key: str | None = None) -> Iterator[tuple[Record, str]]:
    """A JSON array of objects, or an object holding one under `key` (or its only list value)."""
    try:
        with _open_text(path) as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise LmforgetError(f"{path}, line {exc.lineno}: malformed JSON ({exc.msg})") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise LmforgetError(f"{path}: cannot read ({exc})") from None
    rows = json_rows(data, str(path), key)
    for i, obj in enumerate(rows):
        where = f"{path}, record {i}"
        if not isinstance(obj, dict):
            raise LmforgetError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        yield obj, where


def json_rows(data: Any, where: str, key: str | None = None) -> list:
    """The list of records inside a loaded JSON document."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        if key is not None:
            if not isinstance(data.get(key), list):
                raise LmforgetError(f"{where}: expected a list under key {key!r}")
            return data[key]
        lists = [k for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if len(lists) == 1:
            return data[lists[0]]
        raise LmforgetError(
            f"{where}: a JSON file must hold a list of records, or an object with one list of records"
        )
    raise LmforgetError(f"{where}: expected a JSON list or object, got {type(data).__name__}")


def iter_csv(path: Path, fieldnames: list[str] | None = None) -> Iterator[tuple[Record, str]]:
    """CSV with a header row, or without one when `fieldnames` are given (MMLU's release)."""
    with _open_text(path) as fh:
        reader = csv.DictReader(fh, fieldnames=fieldnames)
        first = 1 if fieldnames else 2
        try:
            for i, row in enumerate(reader):
                where = f"{path}, row {i + first}"
                if None in row:
                    raise LmforgetError(f"{where}: more values than columns ({len(reader.fieldnames or [])})")
                yield row, where
        except csv.Error as exc:
            raise LmforgetError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None


def iter_parquet(path: Path, batch_size: int = 4096) -> Iterator[tuple[Record, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise LmforgetError(f"{path}: not a readable Parquet file ({exc})") from None
    i = 0
    for batch in pf.iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            yield row, f"{path}, row {i}"
            i += 1


def iter_file(path: Path) -> Iterator[tuple[Record, str]]:
    kind = file_type(path)
    if kind == "jsonl":
        return iter_jsonl(path)
    if kind == "json":
        return iter_json(path)
    if kind == "csv":
        return iter_csv(path)
    return iter_parquet(path)


def is_saved_dataset(path: Path) -> bool:
    """A directory written by `datasets`' save_to_disk (a Dataset or a DatasetDict)."""
    return path.is_dir() and any(
        (path / name).exists() for name in ("state.json", "dataset_dict.json", "dataset_info.json")
    )


def iter_path(path: str | os.PathLike, split: str | None = None) -> Iterator[tuple[Record, str]]:
    """Records from a file, directory, glob, or a save_to_disk directory, in a stable order."""
    p = Path(os.fspath(path)).expanduser()
    if is_saved_dataset(p):
        yield from iter_saved_dataset(p, split)
        return
    for f in expand_paths(path):
        yield from iter_file(f)


def read_records(path: str | os.PathLike, split: str | None = None) -> list[Record]:
    """All records of a local source as plain dicts; an empty source is an error."""
    rows = [rec for rec, _ in iter_path(path, split)]
    if not rows:
        raise LmforgetError(f"{path}: no records")
    return rows


# --- Hugging Face datasets ------------------------------------------------------------------


def _pick_split(ds: Any, split: str | None, where: str) -> Any:
    from datasets import DatasetDict, IterableDatasetDict

    if isinstance(ds, (DatasetDict, IterableDatasetDict)):
        names = list(ds.keys())
        if split is None:
            if len(names) == 1:
                return ds[names[0]]
            split = "train"
        if split not in ds:
            raise LmforgetError(f"{where}: no split {split!r} (available: {', '.join(names)})")
        return ds[split]
    return ds


def _iter_dataset(ds: Any, where: str) -> Iterator[tuple[Record, str]]:
    for i, row in enumerate(ds):
        yield dict(row), f"{where}, row {i}"


def iter_saved_dataset(path: Path, split: str | None = None) -> Iterator[tuple[Record, str]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise LmforgetError(f"{path}: not a data set saved with save_to_disk ({exc})") from None
    yield from _iter_dataset(_pick_split(ds, split, str(path)), str(path))


def iter_hub(name: str, subset: str | None = None, split: str | None = None,
             streaming: bool = True) -> Iterator[tuple[Record, str]]:
    """Records of a Hugging Face hub data set (needs network or a warm `datasets` cache).

    Streaming by default, so that sampling a few thousand documents from a corpus does not
    download all of it. Any failure to reach or find the data set becomes one clear error.
    """
    import datasets

    where = f"hub data set {name!r}" + (f" ({subset})" if subset else "")
    try:
        ds = datasets.load_dataset(name, subset, split=split or "train", streaming=streaming)
        it = iter(ds)
        first = next(it, None)
    except LmforgetError:
        raise
    except Exception as exc:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ...)
        raise LmforgetError(
            f"{where}: cannot load ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "without network, download it once and point 'path' at a local copy (save_to_disk or files)"
        ) from None
    if first is None:
        return
    yield dict(first), f"{where}, row 0"
    for i, row in enumerate(it, start=1):
        yield dict(row), f"{where}, row {i}"


def require(rec: Record, field: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    """rec[field], or a LmforgetError naming the field and the record."""
    if field not in rec or rec[field] is None:
        raise LmforgetError(f"{where}: missing required field {field!r} (has: {', '.join(map(str, rec)) or 'nothing'})")
    value = rec[field]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise LmforgetError(f"{where}: field {field!r} must be {names}, got {type(value).__name__}")
    return value
