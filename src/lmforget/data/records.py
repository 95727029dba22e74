"""lmforget's own plain format: upstream records and task records, as written by `lmforget data`.

Upstream: {"id"?, "text" | "messages", "source"?, "answer"?, "input_ids"? + "prompt_len"?}; a
missing id becomes the record's position; `input_ids` (self-sampled data) are the exact tokens, of
which the first `prompt_len` are unscored context.
Tasks: {"task", "group"?, "prompt" + "completion" | "messages", "system"?, "split"?}
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
    ids = rec.get("input_ids")
    if ids is not None:  # exact token ids (self-sampled data): kept as they are, never re-encoded
        if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
            raise LmforgetError(f"{where}: field 'input_ids' must be a list of integers")
        plen = rec.get("prompt_len")
        if not isinstance(plen, int) or isinstance(plen, bool):
            raise LmforgetError(f"{where}: 'input_ids' need an integer 'prompt_len' (the unscored context)")
        return UpstreamExample(id=ident, text=text, source=src, answer=None if answer is None else str(answer),
                               input_ids=tuple(ids), prompt_len=plen)
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
