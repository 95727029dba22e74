"""Local files -> a stream of (record, where) pairs: compression, file types, JSON/CSV/Parquet, saved data sets.

Every record travels with a `where` string ("shard.json.gz, line 12") so that an adapter can say
exactly which file and row a problem comes from. Readers stream: a Dolma shard, a Pile `.jsonl.zst`
or a Parquet file is never held in memory whole. Files are recognised by content where names
mislead: compression by magic bytes (gzip, zstandard), and a `.json` file holding one object per
line (Dolma's released `*.json.gz` shards) is read as JSON lines. Gzip is decompressed by ISA-L in
a helper thread and lines are parsed by orjson, which makes a shard read several times faster
than `gzip` + `json` (benchmarks/bench_data.py). Hub data sets: `lmforget.data.hub`.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import orjson

from lmforget.errors import LmforgetError

Record = dict[str, Any]

# File suffix -> reader kind, longest first. "json" means JSON: one document, or JSON lines when the
# content says so; "jsonl" is always one object per line. Compression is told by content, not suffix.
SUFFIXES = {
    ".jsonl.gz": "jsonl",
    ".jsonl.zst": "jsonl",
    ".jsonl.zstd": "jsonl",
    ".ndjson.gz": "jsonl",
    ".json.gz": "json",
    ".json.zst": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".csv.gz": "csv",
}
FILE_TYPES = ("jsonl", "json", "parquet", "csv")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def file_type(path: str | os.PathLike) -> str:
    """The reader kind for a file name, or a LmforgetError naming the accepted suffixes."""
    name = Path(path).name.lower()
    for suffix, kind in SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    raise LmforgetError(f"{path}: unknown file type; expected one of {', '.join(SUFFIXES)} "
                        "(or a directory saved with datasets' save_to_disk)")


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
        files = sorted(f for f in p.rglob("*") if f.is_file() and _kind_or_none(f) in kinds)
        if not files:
            suffixes = ", ".join(s for s, k in SUFFIXES.items() if k in kinds)
            raise LmforgetError(f"{p}: the directory holds no {'/'.join(kinds)} files (looked for {suffixes})")
        return files
    if not p.exists():
        raise LmforgetError(f"{p}: no such file or directory")
    return [p]


def _kind_or_none(path: Path) -> str | None:
    try:
        return file_type(path)
    except LmforgetError:
        return None


def open_binary(path: Path) -> BinaryIO:
    """The decompressed bytes of a file: gzip (ISA-L, in a helper thread) or zstandard by magic bytes."""
    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise LmforgetError(f"{path}: cannot open ({exc.strerror or exc})") from None
    head = raw.peek(4)[:4]
    if head.startswith(GZIP_MAGIC):
        from isal import igzip_threaded

        raw.close()
        return igzip_threaded.open(path, "rb", threads=1)
    if head == ZSTD_MAGIC:
        import zstandard

        # The Pile's shards need a large window; the reader streams, it never holds a shard.
        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(raw, closefd=True)
        return io.BufferedReader(reader, buffer_size=1 << 20)  # type: ignore[arg-type]
    return raw


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a broken compressed or text stream raises while being read."""
    import zlib

    import zstandard
    from isal.igzip_lib import IsalError

    return (OSError, EOFError, UnicodeDecodeError, ValueError, zlib.error, zstandard.ZstdError, IsalError)


def _open_text(path: Path) -> io.TextIOBase:
    return io.TextIOWrapper(open_binary(path), encoding="utf-8", newline="")


def _parse_line(line: bytes, where: str) -> Record:
    """One JSON object from a line: orjson, with the standard library's message on failure."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:  # json also accepts NaN/Infinity and huge integers, which orjson refuses
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LmforgetError(f"{where}: malformed JSON ({exc.msg}, column {exc.colno}); "
                                "expected one JSON object per line") from None
        except UnicodeDecodeError as exc:
            raise LmforgetError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not isinstance(obj, dict):
        raise LmforgetError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


class LineGate:
    """A sampler's say over JSON lines: one key per line, and lines whose key cannot be chosen are not parsed.

    Set with `line_gate(gate)` around a stream. `limit` is the sampler's current bound (the n-th
    smallest key so far, or the fraction); a line at or above it is only checked to look like one
    JSON object (`{...}`), counted in `unparsed`, and skipped. `key` is the key of the last line parsed.
    """

    def __init__(self, keys: Iterator[float]):
        self.keys = keys
        self.limit = 1.0
        self.key: float | None = None
        self.unparsed = 0


_GATE: ContextVar[LineGate | None] = ContextVar("lmforget_line_gate", default=None)


@contextmanager
def line_gate(gate: LineGate) -> Iterator[LineGate]:
    token = _GATE.set(gate)
    try:
        yield gate
    finally:
        _GATE.reset(token)


def _lines(path: Path, fh: BinaryIO, first: int = 1, pending: Iterable[bytes] = ()) -> Iterator[tuple[Record, str]]:
    """Parse JSON lines from `fh` (after any `pending` lines already read), numbering from `first`."""
    lineno = first - 1
    name = str(path)
    gate = _GATE.get()
    try:
        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        for lineno, line in enumerate(_chain(pending, fh), start=first):
            if not line or line.isspace():
                continue
            if gate is not None:
                key = next(gate.keys)
                if key >= gate.limit:  # cannot be sampled: check the shape only, do not parse
                    if line.lstrip()[:1] != b"{" or line.rstrip()[-1:] != b"}":
                        raise LmforgetError(f"{name}, line {lineno}: expected one JSON object per line "
                                            f"({{...}}), got {line[:40]!r}...")
                    gate.unparsed += 1
                    continue
                gate.key = key
            where = f"{name}, line {lineno}"
            try:  # the common case inline: this loop runs once per document of a corpus
                obj = loads(line)
            except decode_error:
                obj = None
            yield (obj if type(obj) is dict else _parse_line(line, where)), where
        if gate is not None:
            gate.key = None  # a last record the filters dropped must not lend its key to the next file
    except _read_errors() as exc:
        raise LmforgetError(f"{path}: cannot read after line {lineno} ({type(exc).__name__}: {exc}); "
                            "expected a complete gzip/zstandard/plain UTF-8 file") from None


def _chain(pending: Iterable[bytes], fh: BinaryIO, block: int = 1 << 20) -> Iterator[bytes]:
    """`pending` lines, then the lines of `fh`, split from 1 MB blocks (much faster than readline)."""
    yield from pending
    tail = b""
    while True:
        chunk = fh.read(block)
        if not chunk:
            if tail:
                yield tail
            return
        lines = chunk.split(b"\n")
        if tail:
            lines[0] = tail + lines[0]
        tail = lines.pop()
        yield from lines


def iter_jsonl(path: Path) -> Iterator[tuple[Record, str]]:
    """One JSON object per line; blank lines are not records; a bad line names its number."""
    with open_binary(path) as fh:
        yield from _lines(path, fh)


def iter_json(path: Path, key: str | None = None) -> Iterator[tuple[Record, str]]:
    """A JSON document (a list of objects, or an object holding one under `key`), or JSON lines.

    Decided by content: when the first line is a whole JSON object and more follows, the file is
    JSON lines whatever its name (Dolma ships JSON lines as `*.json.gz`).
    """
    with open_binary(path) as fh:
        try:
            pending = [fh.readline()]  # every line read so far, blank ones too, so line numbers hold
            while pending[-1] and pending[-1].isspace():
                pending.append(fh.readline())
            first, first_no = pending[-1], len(pending)
            obj = _whole_object(first)
            if obj is not None:
                pending.append(fh.readline())
                while pending[-1] and pending[-1].isspace():
                    pending.append(fh.readline())
                if pending[-1]:  # two objects on two lines: JSON lines
                    yield from _lines(path, fh, first=1, pending=pending)
                    return
                if key is None and not _holds_records(obj):
                    yield obj, f"{path}, line {first_no}"  # a single JSON line
                    return
                data = obj
            else:
                text = b"".join(pending) + fh.read()
                data = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as exc:
            raise LmforgetError(f"{path}, line {exc.lineno}: malformed JSON ({exc.msg}); "
                                "expected a JSON list of objects, an object holding one, or JSON lines") from None
        except _read_errors() as exc:
            raise LmforgetError(f"{path}: cannot read near the start ({type(exc).__name__}: {exc}); "
                                "expected a complete gzip/zstandard/plain UTF-8 file") from None
    rows = json_rows(data, str(path), key)
    for i, obj in enumerate(rows):
        where = f"{path}, record {i}"
        if not isinstance(obj, dict):
            raise LmforgetError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        yield obj, where


def _whole_object(line: bytes) -> dict | None:
    """The line as a JSON object when it is one whole object, else None."""
    if not line.lstrip().startswith(b"{"):
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    return obj if isinstance(obj, dict) else None


def _holds_records(data: dict) -> bool:
    return sum(isinstance(v, list) and bool(v) and isinstance(v[0], dict) for v in data.values()) == 1


def json_rows(data: Any, where: str, key: str | None = None) -> list:
    """The list of records inside a loaded JSON document."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        if key is not None:
            if not isinstance(data.get(key), list):
                raise LmforgetError(f"{where}: expected a list under key {key!r} (keys: {', '.join(map(str, data))})")
            return data[key]
        lists = [k for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if len(lists) == 1:
            return data[lists[0]]
        raise LmforgetError(f"{where}: a JSON file must hold a list of records, or an object with one list of records")
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
                    raise LmforgetError(f"{where}: more values than columns ({len(reader.fieldnames or [])}: "
                                        f"{', '.join(reader.fieldnames or [])})")
                yield row, where
        except csv.Error as exc:
            raise LmforgetError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None
        except _read_errors() as exc:
            raise LmforgetError(f"{path}: cannot read near line {reader.line_num} "
                                f"({type(exc).__name__}: {exc})") from None


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
    return path.is_dir() and any((path / name).exists()
                                 for name in ("state.json", "dataset_dict.json", "dataset_info.json"))


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


def iter_saved_dataset(path: Path, split: str | None = None) -> Iterator[tuple[Record, str]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise LmforgetError(f"{path}: not a data set saved with save_to_disk ({exc})") from None
    for i, row in enumerate(_pick_split(ds, split, str(path))):
        yield dict(row), f"{path}, row {i}"


