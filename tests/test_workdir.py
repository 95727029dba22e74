"""Work directories (lmforget.workdir) and the one driver loop (lmforget.driver): create, resume, refuse,
the kind of a committed directory, and what a failed unit leaves behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lmforget.errors import LmforgetError
from lmforget.workdir import SCHEMA, WorkDir, cell_file, open_or_create

STUDIES = Path(__file__).resolve().parent.parent / "studies"


def test_a_new_work_directory_records_kind_schema_identity_and_when(tmp_path: Path) -> None:
    wd = open_or_create(tmp_path / "w", "similarity", {"seed": 0}, fields={"run": "r"})
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert wd.new and manifest == wd.manifest
    assert (manifest["kind"], manifest["schema"], manifest["fingerprints"], manifest["run"]) == (
        "similarity", SCHEMA, {"seed": 0}, "r")
    assert manifest["created"] and manifest["lmforget_version"]
    assert WorkDir.open(tmp_path / "w").kind == "similarity"


def test_resuming_keeps_the_manifest_and_refuses_another_identity(tmp_path: Path) -> None:
    open_or_create(tmp_path / "w", "similarity", {"seed": 0, "dim": 8})
    before = (tmp_path / "w" / "manifest.json").read_bytes()
    again = open_or_create(tmp_path / "w", "similarity", {"seed": 0, "dim": 8})
    assert not again.new and (tmp_path / "w" / "manifest.json").read_bytes() == before
    with pytest.raises(LmforgetError, match="made with different dim"):
        open_or_create(tmp_path / "w", "similarity", {"seed": 0, "dim": 16})
    assert (tmp_path / "w" / "manifest.json").read_bytes() == before


def test_an_empty_folder_is_used_and_anything_else_in_the_way_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert open_or_create(tmp_path / "empty", "similarity", {}).new
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(LmforgetError, match="exists, is not empty and is not a similarity directory"):
        open_or_create(tmp_path / "busy", "similarity", {})
    (tmp_path / "file").write_text("x")
    with pytest.raises(LmforgetError, match="exists and is not a directory"):
        open_or_create(tmp_path / "file", "similarity", {})
    assert not (tmp_path / "busy" / "manifest.json").exists()


def test_another_kind_is_refused_on_open_and_on_resume(tmp_path: Path) -> None:
    open_or_create(tmp_path / "w", "similarity", {})
    with pytest.raises(LmforgetError, match="holds a similarity, not a replay-study"):
        open_or_create(tmp_path / "w", "replay-study", {})
    with pytest.raises(LmforgetError, match="holds a similarity, not a run"):
        WorkDir.open(tmp_path / "w", "run")
    with pytest.raises(LmforgetError, match="not a work directory"):
        WorkDir.open(tmp_path)


@pytest.mark.parametrize(("folder", "kind"), [("smollm2-ni/runs/matrix", "run"),
                                              ("smollm2-ni/runs/replay", "replay-study")])
def test_a_committed_manifest_without_kind_opens_and_gets_kind_and_schema_added(folder: str, kind: str,
                                                                              tmp_path: Path) -> None:
    """Manifests committed under studies/ predate `kind`: the kind is inferred, and a directory opened to add
    units gets `kind` and `schema` written beside its other fields, which stay as they were."""
    from lmforget.identity import check_compatible

    shutil.copy(STUDIES / folder / "manifest.json", tmp_path / "manifest.json")
    old = json.loads((tmp_path / "manifest.json").read_text())
    assert "kind" not in old and WorkDir.open(tmp_path).kind == kind
    wd = WorkDir.open(tmp_path, kind)
    resumed = open_or_create(tmp_path, kind, wd.identity, check=check_compatible if kind == "run" else None)
    new = json.loads((tmp_path / "manifest.json").read_text())
    assert not resumed.new and (new["kind"], new["schema"]) == (kind, SCHEMA)
    assert {k: v for k, v in new.items() if k not in ("kind", "schema")} == old


def test_unit_files_of_each_kind(tmp_path: Path) -> None:
    from lmforget.workdir import task_slug

    run = WorkDir(tmp_path, "run", {})
    assert run.error_path("<base>") == tmp_path / "rows" / "base.error.json"
    assert run.unit_file("a b", ".parquet") == tmp_path / "rows" / f"{task_slug('a b')}.parquet"
    study = WorkDir(tmp_path, "replay-study", {})
    assert study.unit_file("t / x / oracle:top", ".json") == cell_file(tmp_path, "t / x", "oracle:top", ".json")
    assert cell_file(tmp_path, "t", "oracle:top", ".json") == tmp_path / "results" / task_slug("t") / "oracle_top.json"
    assert WorkDir(tmp_path, "similarity", {}).error_path("gradient") == tmp_path / "measures" / "gradient.error.json"


# ------------------------------------------------------------------------------------ the driver loop
def _fail_b(key: str) -> str:
    if key == "b":
        raise RuntimeError("out of memory (simulated)")
    return key.upper()


def test_the_driver_records_a_failure_goes_on_and_names_the_failed_units(tmp_path: Path) -> None:
    from lmforget.atomic import write_json
    from lmforget.driver import Unit, drive
    from lmforget.executor import LocalExecutor
    from lmforget.status import run_status

    wd = open_or_create(tmp_path / "w", "similarity", {})
    written: dict[str, str] = {}

    def write(key: str, value: str) -> list[str]:
        written[key] = value
        write_json(wd.unit_file(key, ".json"), {"measure": key, "seconds": 1.0})
        return [key]

    units = [Unit(k, (k,)) for k in ("a", "b", "c")]
    with pytest.raises(LmforgetError, match=r"^1 measure\(s\) failed: b \(first: RuntimeError: out of memory"):
        drive(wd, LocalExecutor(), _fail_b, units, write, noun="measure", tracked=["a", "b", "c"])
    assert written == {"a": "A", "c": "C"}  # the unit after the failure ran too
    record = json.loads(wd.error_path("b").read_text())
    assert "out of memory" in record["error"] and "Traceback" in record["traceback"]
    st = run_status(wd.path)
    assert {m["measure"]: m["state"] for m in st["measures"]} == {"a": "finished", "b": "failed", "c": "finished"}
    assert st["driver_running"] is False

    drive(wd, LocalExecutor(), str.upper, [Unit("b", ("b",))], write, noun="measure", tracked=["a", "b", "c"])
    assert written["b"] == "B" and not wd.error_path("b").exists()
    assert run_status(wd.path)["counts"] == {"finished": 3, "running": 0, "failed": 0, "pending": 0}


def test_a_corrupt_row_log_is_an_error_not_a_finished_task(tmp_path: Path, capsys) -> None:
    """A finished row whose log is unreadable is reported, in one line, rather than counted as finished."""
    import pandas as pd

    from lmforget.cli import main
    from lmforget.collect import resolve_recipe
    from lmforget.config import ExecutorConfig, load_recipe
    from lmforget.data.types import TaskExample, TaskSet, UpstreamExample, UpstreamSet
    from lmforget.identity import run_fingerprints
    from lmforget.runs import prepare_run, write_row
    from lmforget.status import run_status

    ups = UpstreamSet([UpstreamExample(id="u0", text="a text")])
    task = TaskSet("t", "g", [TaskExample.from_prompt("q", "a")])
    recipe = resolve_recipe(load_recipe("tiny"), ExecutorConfig())
    run = prepare_run(recipe, tmp_path / "r", ups, [task], run_fingerprints(recipe, ups, [task]))
    write_row(run, "t", pd.DataFrame({"id": ["u0"], "nll": [1.0], "n_tokens": [3]}), {"seconds": 2.0})
    assert run_status(run.path)["counts"]["finished"] == 1
    log = run.path / "rows" / f"{run.row_path('t').stem}.json"
    log.write_text('{"seconds": ', encoding="utf-8")
    with pytest.raises(LmforgetError, match=f"{log}: not a readable row log"):
        run_status(run.path)
    capsys.readouterr()
    assert main(["status", str(run.path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
