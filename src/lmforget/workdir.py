"""Work directories: the one owner of an output folder that a driver fills unit by unit, resumably.

Three kinds share it: a run (`lmforget collect`: one unit per task, plus the base scoring), a replay study
(`lmforget replay`: one unit per task x method cell) and a similarity analysis (`lmforget similarity -o`:
one unit per measure). Each has::

    DIR/manifest.json        kind, schema, the lmforget version that created it, when, its identity
                             (a resume with another one is refused), and what its kind adds
    DIR/<unit file>          a unit's results; its record (.json or .parquet) is written last, so it marks
                             the unit done
    DIR/<unit>.error.json    a failed unit's error and traceback (removed when a re-run finishes it)
    DIR/progress.json        the running driver's pid, host, units and units in flight (`lmforget status`)

The kind is read from the manifest, never guessed from other files, except for the manifests committed
before `kind` existed (`legacy_kind`). This module imports nothing of the stages that fill a directory.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from lmforget import __version__
from lmforget.atomic import read_json, write_json
from lmforget.errors import LmforgetError

Kind = Literal["run", "replay-study", "similarity"]
KINDS: tuple[Kind, ...] = ("run", "replay-study", "similarity")
SCHEMA = 1  # the layout version; a later layout bumps it and says how an older one is read
MANIFEST = "manifest.json"
PROGRESS = "progress.json"
BASE = "<base>"  # the unit key of a run's base-model scoring
# Where each kind keeps its identity in the manifest: studies committed before this module say "settings".
_IDENTITY = {"run": "fingerprints", "replay-study": "settings", "similarity": "fingerprints"}
_COMMAND = {"run": "lmforget collect", "replay-study": "lmforget replay", "similarity": "lmforget similarity"}


def task_slug(name: str) -> str:
    """A file-system-safe, collision-free file stem for a task name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80].strip("._") or "task"
    return f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def method_slug(name: str) -> str:
    """A replay method name as a file name (``oracle:top`` -> ``oracle_top``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def cell_key(task: str, method: str) -> str:
    """A replay cell's unit key (`lmforget status` splits it at the last " / ")."""
    return f"{task} / {method}"


def unit_file(root: str | Path, kind: Kind, key: str, suffix: str) -> Path:
    """A unit's file in a directory of `kind` (`suffix`: .json, .parquet, .error.json, ...)."""
    root = Path(root)
    if kind == "run":
        return root / "rows" / f"{'base' if key == BASE else task_slug(key)}{suffix}"
    if kind == "replay-study":
        task, _, method = key.rpartition(" / ")
        return cell_folder(root, task) / f"{method_slug(method)}{suffix}"
    return root / "measures" / f"{method_slug(key)}{suffix}"


def cell_folder(root: str | Path, task: str) -> Path:
    """The folder of a replay study's cells of one task."""
    return Path(root) / "results" / task_slug(task)


def cell_file(root: str | Path, task: str, method: str, suffix: str) -> Path:
    """A replay study cell's file, from the task and method names."""
    return unit_file(root, "replay-study", cell_key(task, method), suffix)


def read_manifest(path: str | Path) -> dict | None:
    """The directory's manifest, or None when it has none (a corrupt one is an error, not 'none')."""
    return read_json(Path(path) / MANIFEST, "manifest", missing=None)


def legacy_kind(manifest: dict) -> Kind | None:
    """The kind of a manifest written before manifests said it (the committed ones under studies/):
    a run records fingerprints and tasks, a replay study its replay settings. None: neither."""
    if "fingerprints" in manifest and "tasks" in manifest:
        return "run"
    settings = manifest.get("settings")
    if isinstance(settings, dict) and "replay" in settings:
        return "replay-study"
    return None


def kind_of(manifest: dict) -> Kind | None:
    kind = manifest.get("kind")
    return kind if kind in KINDS else legacy_kind(manifest) if kind is None else None


@dataclass
class WorkDir:
    """An opened work directory: its path, kind and manifest (`new`: created by this call)."""

    path: Path
    kind: Kind
    manifest: dict
    new: bool = False

    @classmethod
    def open(cls, path: str | Path, kind: Kind | None = None) -> "WorkDir":
        """The work directory at `path` (read side), refused when it is none or (given `kind`) another kind."""
        path = Path(path)
        manifest = read_manifest(path)
        found = kind_of(manifest) if manifest is not None else None
        if found is None:
            what = f"a {kind} directory" if kind else "a work directory"
            make = f"; create one with `{_COMMAND[kind]}`" if kind else ""
            raise LmforgetError(f"{path}: not {what} (no {MANIFEST} naming its kind){make}")
        if kind is not None and found != kind:
            raise LmforgetError(f"{path} holds a {found}, not a {kind}; choose another directory")
        return cls(path, found, manifest)

    @property
    def identity(self) -> dict:
        return self.manifest.get(_IDENTITY[self.kind], {})

    @property
    def progress_path(self) -> Path:
        return self.path / PROGRESS

    def unit_file(self, key: str, suffix: str) -> Path:
        return unit_file(self.path, self.kind, key, suffix)

    def error_path(self, key: str) -> Path:
        return self.unit_file(key, ".error.json")

    def write_manifest(self, manifest: dict) -> None:
        """Replace the manifest (kind and schema kept first); the caller says what changed in it."""
        rest = {k: v for k, v in manifest.items() if k not in ("kind", "schema")}
        self.manifest = {"kind": self.kind, "schema": SCHEMA, **rest}
        write_json(self.path / MANIFEST, self.manifest)


def _same(path: Path, old: dict, new: dict) -> None:
    """The default resume check: the identity must be equal, key by key."""
    diff = [k for k in {**old, **new} if old.get(k) != new.get(k)]
    if diff:
        raise LmforgetError(f"{path} was made with different {', '.join(diff)}; use a new output directory "
                            "or restore the original settings")


def open_or_create(path: str | Path, kind: Kind, identity: dict, *,
                   check: Callable[[Path, dict, dict], None] | None = None, fields: dict | None = None,
                   write: bool = True) -> WorkDir:
    """Open the work directory at `path` to add units to it, or create it.

    An existing one must be of `kind` and pass `check(path, recorded identity, identity)` (default: equal);
    a manifest without `kind` (committed before it existed) gets `kind` and `schema` added. A missing
    directory, or an empty one, is created with `fields` in its manifest beside the identity. Anything
    else in the way is refused. `write=False` (the other ranks of a launch) writes nothing.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LmforgetError(f"{path} exists and is not a directory; choose a new output directory")
    manifest = read_manifest(path)
    if manifest is not None and kind_of(manifest) == kind:
        wd = WorkDir(path, kind, manifest)
        (check or _same)(path, wd.identity, identity)
        if write and (manifest.get("kind") != kind or "schema" not in manifest):
            wd.write_manifest(manifest)
        return wd
    if manifest is not None and kind_of(manifest) is not None:
        raise LmforgetError(f"{path} holds a {kind_of(manifest)}, not a {kind}; choose a new output directory")
    if path.exists() and any(path.iterdir()):
        raise LmforgetError(f"{path} exists, is not empty and is not a {kind} directory; choose a new output "
                            "directory")
    wd = WorkDir(path, kind, {}, new=True)
    manifest = {"lmforget_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                _IDENTITY[kind]: identity, **(fields or {})}
    if write:
        path.mkdir(parents=True, exist_ok=True)
        wd.write_manifest(manifest)
    else:
        wd.manifest = {"kind": kind, "schema": SCHEMA, **manifest}
    return wd
