"""Where a work directory stands (a run, a replay study, a similarity analysis): finished / running / failed /
pending units, and an ETA.

The driver filling it (`lmforget.driver`, and only it) keeps DIR/progress.json: its pid and host, its units
(tasks, task x method cells, or measures) and those it has handed to the executor. `run_status` reads that file
and the finished results; every file it reads is written atomically, so it is safe to call while the
driver runs. A progress file whose driver is gone (same host, dead pid) counts its units as pending
again: that is what a re-run will redo.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from lmforget.atomic import read_json, write_json
from lmforget.workdir import WorkDir, cell_file, cell_folder, cell_key


class Tracker:
    """The driver's side: record units as they start, finish or fail (no-op when not enabled)."""

    def __init__(self, workdir: WorkDir | None, executor: str, enabled: bool = True,
                 units: list[str] | None = None) -> None:
        """`units`: every unit of this invocation, finished ones included."""
        self.workdir, self.enabled = workdir, enabled
        self.state = {"pid": os.getpid(), "host": socket.gethostname(), "executor": executor,
                      "started": time.time(), "units": list(units or []), "running": {}, "closed": None}
        self._save()

    def _save(self) -> None:
        if self.enabled:
            write_json(self.workdir.progress_path, self.state)

    def started(self, key: str) -> None:
        self.state["running"][key] = time.time()
        self._save()

    def finished(self, key: str) -> None:
        self._done(key)
        if self.enabled:
            self.workdir.error_path(key).unlink(missing_ok=True)  # an earlier failure of this unit is now history

    def failed(self, key: str, error: str, detail: str) -> None:
        if self.enabled:
            write_json(self.workdir.error_path(key),
                       {"task": key, "error": error, "traceback": detail, "time": time.time()})
        self._done(key)

    def _done(self, key: str) -> None:
        self.state["running"].pop(key, None)
        self._save()

    def close(self) -> None:
        self.state["running"] = {}
        self.state["closed"] = time.time()
        self._save()


def _alive(progress: dict) -> bool:
    if progress.get("closed"):
        return False
    if progress.get("host") != socket.gethostname():
        return True  # a driver on another host: trust the file
    try:
        os.kill(int(progress["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _entries(keys: list[tuple[str, ...]], record: Callable, error_path: Callable, running: dict) -> list[dict]:
    """The state of each unit: finished (`record(*key)`, its log, is not None), running, failed or pending."""
    now, out = time.time(), []
    for key in keys:
        label = " / ".join(key)
        rec = record(*key)
        if rec is not None:
            entry = {"state": "finished", "seconds": rec.get("seconds")}
        elif label in running:
            entry = {"state": "running", "running_for": now - running[label]}
        elif (err := read_json(error_path(*key), "error record", missing=None)) is not None:
            entry = {"state": "failed", "error": err.get("error", "unknown error")}
        else:
            entry = {"state": "pending"}
        out.append(entry)
    return out


def _summary(entries: list[dict], live: bool | None,
             groups: list[str] | None = None) -> tuple[dict, float | None, float | None]:
    """Counts per state, mean seconds of a finished entry, and the ETA in seconds (None when unknown).

    `groups` names, per entry, the unit of work that produces it (default: each entry its own). The entries of
    one unit finish together and each records the seconds since the unit started, so the ETA counts a unit's
    time once (its largest entry), not once per entry: a trained arm with three WiSE-FT alphas is one
    training and four scorings, not four trainings."""
    counts = {s: sum(e["state"] == s for e in entries) for s in ("finished", "running", "failed", "pending")}
    secs = [e["seconds"] for e in entries if e["state"] == "finished" and e.get("seconds")]
    mean = sum(secs) / len(secs) if secs else None
    eta = None
    if mean is not None and live:
        units: dict[str, list[dict]] = {}
        for i, e in enumerate(entries):
            units.setdefault(groups[i] if groups else str(i), []).append(e)
        done = [max(e.get("seconds") or 0.0 for e in es) for es in units.values()
                if all(e["state"] == "finished" for e in es)]
        per_unit = sum(done) / len(done) if done and max(done) > 0 else mean
        running = [max(e["running_for"] for e in es if e["state"] == "running")
                   for es in units.values() if any(e["state"] == "running" for e in es)]
        pending = sum(1 for es in units.values() if any(e["state"] == "pending" for e in es)
                      and not any(e["state"] == "running" for e in es))
        left = pending * per_unit + sum(max(0.0, per_unit - r) for r in running)
        eta = left / max(1, len(running))
    elif entries and counts["pending"] + counts["running"] == 0:
        eta = 0.0
    return counts, mean, eta


def _progress(wd: WorkDir) -> tuple[dict, bool | None, dict]:
    """The progress file, whether its driver runs (None: no file, so unknown) and its units in flight."""
    progress = read_json(wd.progress_path, "progress file", missing={})
    live = _alive(progress) if progress else None
    return progress, live, progress.get("running", {}) if live else {}


def run_status(path: str | Path) -> dict:
    """The state of every unit of the work directory at `path`, counts and an ETA (seconds, None when unknown);
    what a unit is follows the directory's kind (its manifest says which)."""
    wd = WorkDir.open(path)
    return {"run": _run_status, "replay-study": _study_status, "similarity": _similarity_status}[wd.kind](wd)


def _run_status(wd: WorkDir) -> dict:
    """Per-task state of a run, the seconds of each finished task."""
    from lmforget.runs import Run

    run = Run(wd.path, wd.manifest)
    progress, live, running = _progress(wd)

    def record(name: str) -> dict | None:
        return (run.row_log(name) or {}) if run.row_path(name).is_file() else None

    tasks = [{"task": name, **e} for name, e in zip(run.task_names, _entries(
        [(n,) for n in run.task_names], record, run.error_path, running), strict=True)]
    counts, mean, eta = _summary(tasks, live)
    return {"kind": "collect", "run": str(run.path), "base_scored": (run.path / "base.parquet").is_file(),
            "collect_running": live, "executor": progress.get("executor"),
            "counts": counts, "mean_task_seconds": mean, "eta_seconds": eta, "tasks": tasks}


def _study_status(wd: WorkDir) -> dict:
    """Per-cell (test task x method) state of a replay study, counts and an ETA.

    The methods are those the driver recorded in progress.json plus any with a finished cell on disk
    (a study started by an older lmforget has no list: only its finished cells are known)."""
    out = wd.path
    tasks = list(wd.identity["replay"]["test_tasks"])
    progress, live, running = _progress(wd)
    methods: list[str] = []
    for key in progress.get("units", []):
        method = key.rpartition(" / ")[2]
        if method not in methods:
            methods.append(method)
    for task in tasks:
        for path in sorted(cell_folder(out, task).glob("*.json")):
            method = read_json(path, "cell record").get("method") if not path.name.endswith(".error.json") else None
            if method and method not in methods:
                methods.append(method)

    def record(task: str, method: str) -> dict | None:
        return read_json(cell_file(out, task, method, ".json"), "cell record", missing=None)

    keys = [(t, m) for t in tasks for m in methods]
    cells = [{"task": t, "method": m, **e} for (t, m), e in zip(keys, _entries(
        keys, record, lambda t, m: wd.error_path(cell_key(t, m)), running), strict=True)]
    from lmforget.replay.methods import trained_as

    units = [cell_key(t, trained_as(m)) for t, m in keys]
    counts, mean, eta = _summary(cells, live, units)
    return {"kind": "replay", "study": str(out), "driver_running": live, "executor": progress.get("executor"),
            "methods": methods, "counts": counts, "mean_cell_seconds": mean, "eta_seconds": eta, "cells": cells}


def _similarity_status(wd: WorkDir) -> dict:
    """Per-measure state of a similarity analysis (the measures its driver recorded, and finished ones)."""
    progress, live, running = _progress(wd)
    measures = list(progress.get("units", []))
    for path in sorted((wd.path / "measures").glob("*.json")):
        if not path.name.endswith(".error.json"):
            name = read_json(path, "measure record").get("measure")
            if name and name not in measures:
                measures.append(name)

    def record(measure: str) -> dict | None:
        return read_json(wd.unit_file(measure, ".json"), "measure record", missing=None)

    units = [{"measure": m, **e} for m, e in zip(measures, _entries(
        [(m,) for m in measures], record, wd.error_path, running), strict=True)]
    counts, mean, eta = _summary(units, live)
    return {"kind": "similarity", "out": str(wd.path), "driver_running": live, "executor": progress.get("executor"),
            "counts": counts, "mean_measure_seconds": mean, "eta_seconds": eta, "measures": units}
