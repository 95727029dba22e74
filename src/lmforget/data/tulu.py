"""Tulu v2 SFT mixture: {"dataset", "id", "messages"} records.

As upstream data each record is a chat whose final assistant answer is scored; `sources:
[flan_v2]` keeps the FLAN part (the paper's binary setup). As new tasks the records are
grouped by their `dataset` (11 subsets), group "tulu".
"""

from __future__ import annotations

from typing import Iterator

from lmforget.data.pools import TaskPools
from lmforget.data.readers import require
from lmforget.data.registry import RawTask, records, register_tasks, register_upstream
from lmforget.data.specs import TaskSpec, UpstreamSpec
from lmforget.data.types import TaskExample, UpstreamExample, to_messages


@register_upstream("tulu")
def read_upstream(spec: UpstreamSpec) -> Iterator[UpstreamExample]:
    for i, (rec, where) in enumerate(records(spec)):
        msgs = to_messages(require(rec, "messages", where, list), where)
        ident = rec.get("id")
        yield UpstreamExample(id=str(ident) if ident not in (None, "") else f"tulu-{i}",
                              messages=msgs, source=str(rec.get("dataset") or ""))


@register_tasks("tulu")
def read_tasks(spec: TaskSpec) -> Iterator[RawTask]:
    pools = TaskPools(spec, group="tulu")
    for rec, where in records(spec):
        name = str(require(rec, "dataset", where))
        if pools.wants(name):
            pools.add(name, lambda: TaskExample(to_messages(require(rec, "messages", where, list), where)))
    yield from pools.tasks()
