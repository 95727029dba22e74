"""Where a collection stands: finished / running / failed / pending per task, and an ETA.

The driver of `collect` (and only it) keeps RUN_DIR/progress.json: its pid and host and the units it
has handed to the executor. `run_status` reads that file and the rows directory; every file it reads
is written atomically, so it is safe to call while a collect is running. A progress file whose driver
is gone (same host, dead pid) counts its units as pending again: that is what a re-run will redo.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from lmforget.atomic import write_json

PROGRESS = "progress.json"


class Tracker:
    """The driver's side: record units as they start, finish or fail (no-op when not enabled)."""

    def __init__(self, run_dir: Path, executor: str, enabled: bool = True) -> None:
        self.path, self.enabled = Path(run_dir), enabled
        self.state = {"pid": os.getpid(), "host": socket.gethostname(), "executor": executor,
                      "started": time.time(), "running": {}, "closed": None}
        self._save()

    def _save(self) -> None:
        if self.enabled:
            write_json(self.path / PROGRESS, self.state)

    def started(self, key: str) -> None:
        self.state["running"][key] = time.time()
        self._save()

    def _error_path(self, key: str) -> Path:
        from lmforget.runs import task_slug

        return self.path / "rows" / f"{'base' if key == '<base>' else task_slug(key)}.error.json"

    def finished(self, key: str) -> None:
        self._done(key)
        if self.enabled:
            self._error_path(key).unlink(missing_ok=True)  # an earlier failure of this unit is now history

    def failed(self, key: str, error: str, detail: str) -> None:
        if self.enabled:
            write_json(self._error_path(key), {"task": key, "error": error, "traceback": detail, "time": time.time()})
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


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def run_status(run_dir: str | Path) -> dict:
    """Per-task state, seconds of each finished task, counts and an ETA (seconds, None when unknown)."""
    from lmforget.runs import Run

    run = Run.open(run_dir)
    progress = _read_json(run.path / PROGRESS) or {}
    live = bool(progress) and _alive(progress)
    running = progress.get("running", {}) if live else {}
    now = time.time()
    tasks = []
    for name in run.task_names:
        entry: dict = {"task": name}
        if run.row_path(name).is_file():
            entry["state"] = "finished"
            entry["seconds"] = (run.row_log(name) or {}).get("seconds")
        elif name in running:
            entry.update(state="running", running_for=now - running[name])
        elif run.error_path(name).is_file():
            err = _read_json(run.error_path(name)) or {}
            entry.update(state="failed", error=err.get("error", "unknown error"))
        else:
            entry["state"] = "pending"
        tasks.append(entry)
    counts = {s: sum(t["state"] == s for t in tasks) for s in ("finished", "running", "failed", "pending")}
    secs = [t["seconds"] for t in tasks if t["state"] == "finished" and t.get("seconds")]
    eta = None
    if secs and live:
        per_task = sum(secs) / len(secs)
        parallel = max(1, counts["running"])
        left = counts["pending"] * per_task + sum(max(0.0, per_task - t["running_for"])
                                                  for t in tasks if t["state"] == "running")
        eta = left / parallel
    elif counts["pending"] + counts["running"] == 0:
        eta = 0.0
    return {"run": str(run.path), "base_scored": (run.path / "base.parquet").is_file(),
            "collect_running": live, "executor": progress.get("executor"),
            "counts": counts, "mean_task_seconds": sum(secs) / len(secs) if secs else None,
            "eta_seconds": eta, "tasks": tasks}
