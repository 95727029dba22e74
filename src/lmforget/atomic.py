"""Atomic file writes: a reader (or a resumed run) never sees a half-written file; `read_json` reads back
the JSON records they write."""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Iterable, Iterator

from lmforget.errors import LmforgetError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync and rename it over `path`.

    On any exception the temporary file is removed and `path` is left untouched.
    `suffix` keeps the extension for writers that dispatch on it (np.savez, parquet).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temp(path, suffix or path.suffix + ".tmp")
    mode = stat.S_IMODE(tmp_path.stat().st_mode)
    try:
        yield tmp_path
        if stat.S_IMODE(tmp_path.stat().st_mode) != mode:  # a writer that replaced the file (safetensors: 0600)
            os.chmod(tmp_path, mode)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _create_temp(path: Path, suffix: str) -> Path:
    """A new, empty, uniquely named file beside `path`, created with mode 0666 minus the umask.

    Like mkstemp (O_EXCL, so never someone else's file) but with the usual permissions, which
    mkstemp's 0600 would not give and which reading the umask would need a process-wide change for.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")  # pragma: no cover


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


_REQUIRED = object()


def read_json(path: str | os.PathLike, what: str = "JSON file", missing: Any = _REQUIRED) -> Any:
    """A JSON record (as `write_json` writes it), or `missing` when the file does not exist and `missing`
    is given. An unreadable or corrupt file is a LmforgetError naming it (`what` says what the file is),
    never taken for an absent or empty record."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        if missing is not _REQUIRED:
            return missing
        raise LmforgetError(f"{path}: not a readable {what} ({exc})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LmforgetError(f"{path}: not a readable {what} ({exc})") from None


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """One JSON object per line (UTF-8, non-ASCII kept as is), written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False, default=_json_default) + "\n")


def finite(obj: Any) -> Any:
    """`obj` with every NaN/inf float replaced by None (tuples become lists), so the JSON written from it
    is strict: GitHub, jq and browsers reject NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    """Serialise numpy scalars/arrays and paths in JSON output."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
