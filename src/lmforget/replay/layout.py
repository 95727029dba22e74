"""Where a replay study keeps its files (the layout in `lmforget.replay.study`'s docstring).

Kept apart from the study driver so that a reader of the directory (`lmforget status`, the HTML report)
needs none of the driver, and the driver can record its progress with `lmforget.status`.
"""

from __future__ import annotations

from pathlib import Path

from lmforget.atomic import read_json
from lmforget.errors import LmforgetError
from lmforget.replay.methods import method_slug
from lmforget.runs import task_slug

MANIFEST = "manifest.json"


def cell_folder(out: str | Path, task: str) -> Path:
    return Path(out) / "results" / task_slug(task)


def cell_file(out: str | Path, task: str, method: str, suffix: str) -> Path:
    """A cell's file, from the task and method names (``suffix``: .json, .parquet, .error.json)."""
    return cell_folder(out, task) / f"{method_slug(method)}{suffix}"


def read_manifest(out: str | Path) -> dict | None:
    """The directory's manifest, or None when it has none (a corrupt one is an error, not 'none')."""
    return read_json(Path(out) / MANIFEST, "manifest", missing=None)


def is_study(out: str | Path) -> bool:
    """Whether `out` holds a replay study (its manifest has replay settings), not a collect run."""
    manifest = read_manifest(out) or {}
    return isinstance(manifest.get("settings"), dict) and "replay" in manifest["settings"]


def study_tasks(out: str | Path) -> list[str]:
    """The test tasks of the study in `out`, from its manifest."""
    if not is_study(out):
        raise LmforgetError(f"{out}: not a replay study (no manifest with replay settings)")
    return list(read_manifest(out)["settings"]["replay"]["test_tasks"])
