"""lmforget's own plain format: upstream records and task records, as written by `lmforget data`.

Upstream: {"id"?, "text" | "messages", "source"?, "answer"?}; a missing id becomes the record's
position. Tasks: {"task", "group"?, "prompt" + "completion" | "messages", "system"?, "split"?}
where split is "train" (default) or "eval".
"""

from __future__ import annotations

from typing import Iterator

from lmforget.data.readers import Record, require
from lmforget.data.registry import RawTask, records, register_tasks, register_upstream
from lmforget.data.specs import TaskSpec, UpstreamSpec
from lmforget.data.types import TaskExample, UpstreamExample, to_messages
from lmforget.errors import LmforgetError


def upstream_example(rec: Record, where: str, default_id: str, source: str = "") -> UpstreamExample:
    """One upstream example from a record holding 'text' or 'messages'."""
    ident = rec.get("id")
    ident = default_id if ident is None or ident == "" else str(ident)
    src = rec.get("source")
    src = source if src is None else str(src)
    answer = rec.get("answer")
    if rec.get("messages") is not None:
        msgs = to_messages(require(rec, "messages", where, list), where)
        return UpstreamExample(id=ident, messages=msgs, source=src,
                               answer=None if answer is None else str(answer))
    if "text" not in rec:
        raise LmforgetError(f"{where}: missing required field 'text' (or 'messages')")
    text = require(rec, "text", where)
    return UpstreamExample(id=ident, text=text, source=src, answer=None if answer is None else str(answer))


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
    tasks: dict[str, RawTask] = {}
    for rec, where in records(spec):
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
