"""Run directories: one row per task, written atomically, resumable, guarded by fingerprints.

Layout of RUN_DIR::

    manifest.json          recipe, fingerprints (model, upstream, scorer, fine-tuning, tasks), version
    data/upstream.jsonl    the N upstream examples, in column order (not committed with results: without
                           it, a self-sampled set is rebuilt from its pinned token ids, see Run.upstream)
    data/tasks.jsonl       every task's examples (name, group, split, messages)
    base.parquet           base-model scores: id, nll, n_tokens (+ correct for the binary metric)
    rows/<task>.json       fine-tuning log of a task (steps, loss, seconds)
    rows/<task>.parquet    scores after fine-tuning on that task; its presence marks the task done
    matrix.npz             the forgetting matrix (docs/architecture.md contract)

A killed run loses at most the task in progress; re-running the same command skips finished tasks.
A directory made from different data, model or settings is refused rather than mixed (what "different"
means is `lmforget.identity`'s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lmforget import __version__
from lmforget.atomic import atomic_path, read_json, write_json, write_jsonl
from lmforget.config import Recipe, recipe_from_dict
from lmforget.data.records import read_task_file, read_upstream_file, task_rows
from lmforget.data.types import TaskSet, UpstreamSet
from lmforget.errors import LmforgetError
from lmforget.identity import IDENTITY_VERSION, check_compatible, weights_fingerprint
from lmforget.matrix import ForgettingMatrix
from lmforget.migrate import migrate
from lmforget.workdir import WorkDir, open_or_create, unit_file


def write_table(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)


@dataclass
class Run:
    """An opened run directory (read side); `collect` is the write side."""

    path: Path
    manifest: dict
    _upstream: UpstreamSet | None = field(default=None, init=False, repr=False, compare=False)
    upstream_origin: str | None = field(default=None, init=False, repr=False, compare=False)  # when rebuilt
    _upstream_error: str | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        wd = WorkDir.open(path, "run")
        return cls(wd.path, wd.manifest)

    @property
    def workdir(self) -> WorkDir:
        return WorkDir(self.path, "run", self.manifest)

    @property
    def recipe(self) -> Recipe:
        return recipe_from_dict(self.manifest["recipe"])

    @property
    def task_names(self) -> list[str]:
        return [t["name"] for t in self.manifest["tasks"]]

    def upstream(self) -> UpstreamSet:
        """The run's upstream examples, in column order: its data/ copy or, when data/ is absent, the set
        rebuilt exactly from what is committed (self-sampled: the pinned token ids, decoded with the
        run's tokenizer), trusted only when its fingerprint is the manifest's."""
        if self._upstream is not None:
            return self._upstream
        path = self.path / "data" / "upstream.jsonl"
        if path.is_file():
            self._upstream = read_upstream_file(path)
            return self._upstream
        if self._upstream_error is None:
            try:
                self._upstream, origin = self._rebuild_upstream()
            except LmforgetError as exc:
                self._upstream_error = str(exc)  # one attempt: it may load a tokenizer and read many files
        if self._upstream is None:
            raise LmforgetError(f"{path}: missing; rebuild the run's data with `lmforget collect RECIPE -o "
                                f"{self.path}` (finished rows are not redone); it could not be rebuilt from "
                                f"committed files: {self._upstream_error}")
        try:
            origin = origin.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            pass
        self.upstream_origin = f"{origin} (data/ absent: rebuilt from the token ids stored there; fingerprint checked)"
        return self._upstream

    def readable_upstream(self) -> tuple[UpstreamSet | None, str | None]:
        """For reading results (report): `(upstream(), None)`, or `(None, why)` when data/ is absent and
        the examples cannot be rebuilt (the matrix's example ids then come from base.parquet)."""
        try:
            return self.upstream(), None
        except LmforgetError as exc:
            if (self.path / "data" / "upstream.jsonl").is_file():
                raise  # a damaged copy is an error, not a missing one
            return None, self._upstream_error or str(exc)

    def _rebuild_upstream(self) -> tuple[UpstreamSet, Path]:
        recipe = self.recipe
        spec = recipe.upstream
        if spec.format != "self-sampled":
            raise LmforgetError(f"only self-sampled upstream data is rebuilt from committed files, not "
                                f"format {spec.format!r}")
        fps = self.manifest.get("fingerprints", {})
        if not fps.get("upstream"):
            raise LmforgetError("the manifest records no upstream fingerprint to check against")
        from lmforget.self_sampling import pinned_upstream

        here = self.path.resolve()
        m = recipe.model
        try:
            weights = weights_fingerprint(m.name, init_seed=m.init_seed, revision=m.revision)  # what drew them
            return pinned_upstream(spec, m.name, weights, fps["upstream"], roots=[here, *here.parents][:5],
                                   revision=m.revision, trust_remote_code=m.trust_remote_code)
        except LmforgetError:
            raise
        except Exception as exc:  # a missing or unreadable model or contexts file: a reason, not a crash
            first = (str(exc).strip().splitlines() or [""])[0]
            raise LmforgetError(f"{type(exc).__name__}: {first}") from None

    def tasks(self) -> list[TaskSet]:
        """The run's tasks from data/tasks.jsonl, in manifest order."""
        path = self.path / "data" / "tasks.jsonl"
        if not path.is_file():  # data/ is not committed with a run's results; `collect` rebuilds it
            raise LmforgetError(f"{path}: missing; rebuild the run's data with "
                                f"`lmforget collect RECIPE -o {self.path}` (finished rows are not redone)")
        by_name = {t.name: t for t in read_task_file(path)}
        return [by_name[n] for n in self.task_names if n in by_name]

    def base_scores(self) -> pd.DataFrame | None:
        p = self.path / "base.parquet"
        return pd.read_parquet(p) if p.is_file() else None

    def row_path(self, task: str) -> Path:
        return unit_file(self.path, "run", task, ".parquet")

    def error_path(self, task: str) -> Path:
        return unit_file(self.path, "run", task, ".error.json")

    def finished(self) -> list[str]:
        return [t for t in self.task_names if self.row_path(t).is_file()]

    def row_log(self, task: str) -> dict | None:
        return read_json(unit_file(self.path, "run", task, ".json"), "row log", missing=None)

    def matrix(self, require_all: bool = False) -> ForgettingMatrix:
        """Assemble Z from the finished rows (unfinished tasks are left out, or refused)."""
        base = self.base_scores()
        if base is None:
            raise LmforgetError(f"{self.path}: the base model has not been scored yet; run `lmforget collect` first")
        done = self.finished()
        missing = [t for t in self.task_names if t not in done]
        if require_all and missing:
            raise LmforgetError(f"{self.path}: {len(missing)} task(s) unfinished (e.g. {missing[0]!r}); "
                                "re-run the collect command to finish them")
        if not done:
            raise LmforgetError(f"{self.path}: no finished task yet; run `lmforget collect`")
        recipe = self.recipe
        groups = {t["name"]: t["group"] for t in self.manifest["tasks"]}
        upstream, _ = self.readable_upstream()
        if upstream is None:  # data/ absent and not rebuilt: the columns are base.parquet's ids, sources unknown
            ids, sources = np.array([str(i) for i in base["id"]]), [""] * len(base)
        else:
            ids, sources = np.array(upstream.ids), upstream.sources
        if list(base["id"]) != list(ids):
            raise LmforgetError(f"{self.path}: base.parquet does not match data/upstream.jsonl")
        rows = []
        for task in done:
            after = pd.read_parquet(self.row_path(task))
            if list(after["id"]) != list(ids):
                raise LmforgetError(f"{self.row_path(task)}: ids do not match the upstream set")
            rows.append(after)
        kind = recipe.score.metric
        meta = {
            "model": recipe.model.name,
            "recipe": recipe.name,
            "scorer": recipe.score.model_dump(mode="json"),
            "finetune": recipe.finetune.model_dump(mode="json"),
            "fingerprints": self.manifest["fingerprints"],
            "lmforget_version": __version__,
            "unfinished_tasks": missing,
        }
        m = ForgettingMatrix.from_scores(base, rows, tasks=done, task_groups=[groups[t] for t in done],
                                         examples=ids, example_sources=sources, kind=kind, meta=meta)
        m.meta["n_undefined"] = int(np.isnan(m.Z).any(axis=0).sum()) if m.Z.size else 0
        return m


def _environment() -> dict:
    """Versions of the libraries that make the numbers (a decode or a kernel may change between releases)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    env = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "tokenizers", "accelerate", "numpy"):
        try:
            env[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return env


def prepare_run(recipe: Recipe, run_dir: str | Path, upstream: UpstreamSet, tasks: list[TaskSet],
                fps: dict, is_main: bool = True) -> Run:
    """Create the run directory, or check that an existing one was made from the same inputs.

    A changed task list is written to the manifest and recorded in `task_changes`; the run keeps its
    provenance (`created`, `environment`, the version that made its first rows). `fps`:
    `identity.run_fingerprints(recipe, upstream, tasks)`. A manifest of an older identity version is migrated
    first (`lmforget.migrate`, verified against the fingerprints it stores)."""
    if is_main:
        migrate(run_dir, kind="run")
    described = {"recipe": recipe.model_dump(mode="json"),
                 "tasks": [{"name": t.name, "group": t.group, "n_train": len(t.train), "n_eval": len(t.eval)}
                           for t in tasks],
                 "n_upstream": len(upstream)}
    fields = {"identity_version": IDENTITY_VERSION, "environment": _environment(),  # environment: provenance only
              **described}
    wd = open_or_create(run_dir, "run", fps, check=check_compatible, write=is_main, fields=fields)
    old, path = wd.manifest, wd.path
    before, after = [t["name"] for t in old["tasks"]], [t.name for t in tasks]
    changed = set(before) != set(after) or len(before) != len(after)
    if changed:
        change = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "added": [t for t in after if t not in before],
                  "removed": [t for t in before if t not in after], "lmforget_version": __version__,
                  "environment": _environment()}
        manifest = {**old, **described, "fingerprints": fps,
                    "task_changes": [*old.get("task_changes", []), change]}
        if is_main:
            wd.write_manifest(manifest)
        else:
            wd.manifest = manifest
    data = [path / "data" / f for f in ("upstream.jsonl", "tasks.jsonl")]
    if is_main and (wd.new or changed or not all(p.is_file() for p in data)):
        _write_data(path, upstream, tasks)  # same fingerprints: the copies a user removed come back
    return Run(path, wd.manifest)


def _write_data(path: Path, upstream: UpstreamSet, tasks: list[TaskSet]) -> None:
    """The run's copies of its inputs (data/), which `Run.upstream` and `Run.tasks` read back."""
    write_jsonl(path / "data" / "upstream.jsonl", (ex.to_json() for ex in upstream))
    write_jsonl(path / "data" / "tasks.jsonl", task_rows(tasks))


def write_row(run: Run, task: str, scores: pd.DataFrame, log: dict) -> None:
    write_json(unit_file(run.path, "run", task, ".json"), log)
    write_table(run.row_path(task), scores)  # last: its presence marks the task finished
    run.error_path(task).unlink(missing_ok=True)  # an earlier failure of this task is now history

