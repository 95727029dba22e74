"""A run's data/ copies: written by one writer per file, read back by the records adapter, strictly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforget.atomic import write_jsonl
from lmforget.data.records import read_task_file, task_rows
from lmforget.data.types import TaskExample, TaskSet, UpstreamExample
from lmforget.errors import LmforgetError
from lmforget.runs import Run

TASKS = [
    TaskSet("copy", "toy", [TaskExample.from_prompt("a", "a"), TaskExample.from_prompt("b", "b", system="echo")],
            [TaskExample.from_prompt("c", "c")]),
    TaskSet("upper", "caps", [TaskExample.from_prompt("x", "X")]),
]


def _run(tmp_path: Path, names: list[str]) -> Run:
    return Run(tmp_path, {"tasks": [{"name": n} for n in names]})


def _write_lines(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_tasks_round_trip_through_the_one_writer_in_manifest_order(tmp_path):
    write_jsonl(tmp_path / "data" / "tasks.jsonl", task_rows(TASKS))
    assert _run(tmp_path, ["upper", "copy"]).tasks() == [TASKS[1], TASKS[0]]
    assert _run(tmp_path, ["copy", "gone"]).tasks() == [TASKS[0]]  # only the manifest's tasks
    rows = list(task_rows(TASKS))
    assert [(r["task"], r["group"], r["split"]) for r in rows] == [
        ("copy", "toy", "train"), ("copy", "toy", "train"), ("copy", "toy", "eval"), ("upper", "caps", "train")]


def test_cli_task_export_is_the_run_format(tmp_path, capsys):
    from lmforget.cli import main

    out = tmp_path / "tasks.jsonl"
    assert main(["data", "tasks", "records", "package:tiny/tasks.jsonl", "-s", "n_eval=1", "-o", str(out)]) == 0
    exported = read_task_file(out)
    assert exported and all(t.eval for t in exported)
    write_jsonl(tmp_path / "again.jsonl", task_rows(exported))
    assert (tmp_path / "again.jsonl").read_bytes() == out.read_bytes()


def test_upstream_copy_reads_strictly(tmp_path):
    path = tmp_path / "data" / "upstream.jsonl"
    good = UpstreamExample(id="a", text="one two three", input_ids=(1, 2, 3), prompt_len=1)
    _write_lines(path, [good.to_json(), {"id": "b", "text": "x y", "input_ids": [4, 5]}])  # prompt_len lost
    with pytest.raises(LmforgetError) as err:
        _run(tmp_path, []).upstream()
    message = str(err.value)
    assert f"{path}, line 2" in message and "prompt_len" in message and "\n" not in message

    _write_lines(path, [good.to_json(), {"id": "b", "text": "x", "input_ids": [4, 5], "prompt_len": 2}])
    with pytest.raises(LmforgetError, match=r"upstream\.jsonl, line 2: upstream example 'b': 'prompt_len' must"):
        _run(tmp_path, []).upstream()  # the record's own check names the line too
    _write_lines(path, [good.to_json(), good.to_json()])
    with pytest.raises(LmforgetError, match=r"upstream\.jsonl: upstream set .*duplicate id 'a'"):
        _run(tmp_path, []).upstream()
    _write_lines(path, [good.to_json(), "{not json"])
    with pytest.raises(LmforgetError, match=r"upstream\.jsonl, line 2: malformed JSON"):
        _run(tmp_path, []).upstream()


@pytest.mark.parametrize(("row", "message"), [
    ({"task": "t", "group": "g", "split": "train", "messages": [{"role": "robot", "content": "x"}]}, "unknown role"),
    ({"task": "t", "group": "g", "split": "test", "messages": [{"role": "assistant", "content": "x"}]}, "'split'"),
    ({"group": "g", "split": "train", "messages": [{"role": "assistant", "content": "x"}]}, "'task'"),
])
def test_a_bad_task_row_names_file_and_line(tmp_path, row, message):
    path = tmp_path / "data" / "tasks.jsonl"
    _write_lines(path, [*task_rows(TASKS), row])
    with pytest.raises(LmforgetError, match=rf"tasks\.jsonl, line 5: .*{message}"):
        _run(tmp_path, ["copy"]).tasks()


def test_a_task_with_only_eval_rows_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "data" / "tasks.jsonl"
    _write_lines(path, [{"task": "t", "group": "g", "split": "eval",
                         "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])
    with pytest.raises(LmforgetError, match=r"tasks\.jsonl: task 't' has no training examples"):
        _run(tmp_path, ["t"]).tasks()


def test_missing_tasks_copy_says_how_to_rebuild_it(tmp_path):
    with pytest.raises(LmforgetError, match="missing; rebuild the run's data with `lmforget collect"):
        _run(tmp_path, ["t"]).tasks()
