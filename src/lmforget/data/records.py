"""lmforget's own plain format: upstream records and task records, as written by `lmforget data`.

Upstream: {"id"?, "text" | "messages", "source"?, "answer"?, "input_ids"? + "prompt_len"?}; a
missing id becomes the record's position; `input_ids` (self-sampled data) are the exact tokens, of
which the first `prompt_len` are unscored context.
Tasks: {"task", "group"?, "prompt" + "completion" | "messages", "system"?, "split"?}
where split is "train" (default) or "eval".

A run directory's `data/upstream.jsonl` and `data/tasks.jsonl` are in this format too: `task_rows` writes
task rows (`UpstreamExample.to_json` upstream ones) and `read_upstream_file` / `read_task_file` read a run's
copies back with the same checks as any other records file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from lmforget.data.files import Record, iter_jsonl
from lmforget.data.registry import RawTask, records, register_tasks, register_upstream
from lmforget.data.specs import TaskSpec, UpstreamSpec
from lmforget.data.types import TaskExample, TaskSet, UpstreamExample, UpstreamSet, require, to_messages
from lmforget.errors import LmforgetError


def upstream_example(rec: Record, where: str, default_id: str, source: str = "") -> UpstreamExample:
    """One upstream example from a record holding 'text' or 'messages'."""
    ident = rec.get("id")
    ident = default_id if ident is None or ident == "" else str(ident)
    src = rec.get("source")
    answer = rec.get("answer")
    fields: dict = {"id": ident, "source": source if src is None else str(src),
                    "answer": None if answer is None else str(answer)}
    if rec.get("messages") is not None:
        fields["messages"] = to_messages(require(rec, "messages", where, list), where)
    elif "text" not in rec:
        raise LmforgetError(f"{where}: missing required field 'text' (or 'messages')")
    else:
        fields["text"] = require(rec, "text", where)
        ids = rec.get("input_ids")
        if ids is not None:  # exact token ids (self-sampled data): kept as they are, never re-encoded
            if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
                raise LmforgetError(f"{where}: field 'input_ids' must be a list of integers")
            plen = rec.get("prompt_len")
            if not isinstance(plen, int) or isinstance(plen, bool):
                raise LmforgetError(f"{where}: 'input_ids' need an integer 'prompt_len' (the unscored context)")
            fields.update(input_ids=tuple(ids), prompt_len=plen)
    try:
        return UpstreamExample(**fields)
    except LmforgetError as exc:
        raise LmforgetError(f"{where}: {exc}") from None


def task_example(rec: Record, where: str) -> TaskExample:
    """A chat from 'messages', or a prompt/completion pair (with an optional system prompt)."""
    if rec.get("messages") is not None:
        return TaskExample(to_messages(require(rec, "messages", where, list), where))
    prompt = require(rec, "prompt", where)
    completion = require(rec, "completion", where)
    system = rec.get("system")
    return TaskExample.from_prompt(prompt, completion, system=str(system) if system else None)


@register_upstream("records")
def read_upstream(spec: UpstreamSpec) -> Iterator[UpstreamExample]:
    for i, (rec, where) in enumerate(records(spec)):
        yield upstream_example(rec, where, default_id=str(i))


@register_tasks("records")
def read_tasks(spec: TaskSpec) -> Iterator[RawTask]:
    yield from _raw_tasks(records(spec))


def _raw_tasks(rows: Iterable[tuple[Record, str]]) -> Iterator[RawTask]:
    """Task records grouped by task, in order of first appearance."""
    tasks: dict[str, RawTask] = {}
    for rec, where in rows:
        name = str(require(rec, "task", where, (str, int)))
        group = str(rec.get("group") or "tasks")
        split = rec.get("split") or "train"
        if split not in ("train", "eval"):
            raise LmforgetError(f"{where}: field 'split' must be 'train' or 'eval', got {split!r}")
        raw = tasks.setdefault(name, RawTask(name, group, [], None))
        if split == "train":
            raw.pool.append(task_example(rec, where))
        else:
            raw.held_out = (raw.held_out or []) + [task_example(rec, where)]
    yield from tasks.values()


def task_rows(tasks: Iterable[TaskSet]) -> Iterator[Record]:
    """One records-format row per task example (what `read_tasks` reads): a run's data/tasks.jsonl and
    `lmforget data tasks -o`."""
    for t in tasks:
        for split, items in (("train", t.train), ("eval", t.eval)):
            for ex in items:
                yield {"task": t.name, "group": t.group, "split": split, **ex.to_json()}


def read_upstream_file(path: Path) -> UpstreamSet:
    """A run's data/upstream.jsonl (written from `UpstreamExample.to_json`), checked line by line."""
    examples = [upstream_example(rec, where, default_id=str(i)) for i, (rec, where) in enumerate(iter_jsonl(path))]
    try:
        return UpstreamSet(examples)
    except LmforgetError as exc:
        raise LmforgetError(f"{path}: {exc}") from None


def read_task_file(path: Path) -> list[TaskSet]:
    """A run's data/tasks.jsonl (written by `task_rows`), checked line by line; tasks in file order."""
    raws = list(_raw_tasks(iter_jsonl(path)))
    try:
        return [TaskSet(raw.name, raw.group, raw.pool, raw.held_out or []) for raw in raws]
    except LmforgetError as exc:  # a task without training examples
        raise LmforgetError(f"{path}: {exc}") from None
