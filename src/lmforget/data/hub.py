"""Hugging Face hub data sets -> a stream of (record, where) pairs, from a local copy when there is one.

The offline flag, the hub cache's snapshots (read with `lmforget.data.files`' streaming readers), the
guess of which snapshot files hold a split, and `datasets.load_dataset` as the last resort.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from lmforget.data.files import Record, expand_paths, iter_file
from lmforget.errors import LmforgetError


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set: no network call is attempted."""
    return any(os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no", "off")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_snapshot(name: str) -> Path | None:
    """The local copy of a hub data set in the Hugging Face cache (`hf download --repo-type dataset`), or
    None when it is not cached or the name is not a hub repo id (`datasets` may still know the name).
    Any other failure (an unreadable cache) is raised, not mistaken for "not cached"."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, repo_type="dataset", local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError):
        return None


_SPLIT_WORDS = ("train", "test", "validation", "valid", "dev", "eval")


def _split_files(files: list[Path], root: Path, split: str, where: str) -> list[Path]:
    """The files of one split, by the hub's naming (`train-00000-of-00002.parquet`, `data/test/...`)."""
    def has(word: str, f: Path) -> bool:
        parts = f.relative_to(root).as_posix().lower().replace("-", "/").replace("_", "/").replace(".", "/")
        return word in parts.split("/")

    chosen = [f for f in files if has(split.lower(), f)]
    if chosen:
        return chosen
    named = sorted({w for f in files for w in _SPLIT_WORDS if has(w, f)})
    if named:
        raise LmforgetError(f"{where}: no split {split!r} in the local copy {root} (files name: {', '.join(named)})")
    return files  # files not named by split: they are the one split


def snapshot_files(root: Path, name: str, subset: str | None, split: str | None) -> list[Path]:
    """The data files of one subset and split in a hub data set's local snapshot."""
    where = f"hub data set {name!r} (local copy {root})"
    base = root
    if subset:
        base = next((c for c in (root / subset, root / "data" / subset) if c.is_dir()), None)
        if base is None:
            raise LmforgetError(f"{where}: no folder for subset {subset!r} (looked for {subset}/ and data/{subset}/)")
    return _split_files(expand_paths(base), root, split or "train", where)


def iter_snapshot(root: Path, name: str, subset: str | None, split: str | None) -> Iterator[tuple[Record, str]]:
    """Records of a hub data set's local snapshot, read and streamed like local files."""
    for f in snapshot_files(root, name, subset, split):
        yield from iter_file(f)


def iter_hub(name: str, subset: str | None = None, split: str | None = None,
             streaming: bool = True) -> Iterator[tuple[Record, str]]:
    """Records of a Hugging Face hub data set, from a local copy when there is one.

    In order: the Hugging Face hub cache (a snapshot downloaded earlier, read with lmforget's own
    streaming readers, no network); then `datasets.load_dataset`, which streams from the hub when
    there is network and falls back to `datasets`' own cache when there is none (or when
    HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set). Any failure becomes one clear error.
    """
    snapshot = hub_snapshot(name)
    if snapshot is not None:
        yield from iter_snapshot(snapshot, name, subset, split)
        return
    import datasets

    where = f"hub data set {name!r}" + (f" ({subset})" if subset else "")
    try:
        # Offline, streaming is not needed: the cached Arrow files are memory-mapped, not loaded.
        ds = datasets.load_dataset(name, subset, split=split or "train", streaming=streaming and not hub_offline())
        it = iter(ds)
        first = next(it, None)
    except LmforgetError:
        raise
    except Exception as exc:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ...)
        raise LmforgetError(
            f"{where}: cannot load ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "without network, download it once (hf download --repo-type dataset, or save_to_disk) "
            "and point 'path' at the local copy"
        ) from None
    if first is None:
        return
    yield dict(first), f"{where}, row 0"
    for i, row in enumerate(it, start=1):
        yield dict(row), f"{where}, row {i}"
