"""Tulu SFT mixtures: {"id", "messages"} with the subset in "dataset" (Tulu v2) or "source" (Tulu 3, OLMo-2).

As upstream data each record is a chat whose final assistant answer is scored; `sources:
[flan_v2]` keeps the FLAN part (the paper's binary setup). As new tasks the records are
grouped by their subset (Tulu v2: 11 subsets; the OLMo-2 SFT mixture: its sources), group "tulu".
"""

from __future__ import annotations

from typing import Iterator

from lmforget.data.files import Record
from lmforget.data.pools import TaskPools
from lmforget.data.registry import RawTask, records, register_tasks, register_upstream
from lmforget.data.specs import TaskSpec, UpstreamSpec
from lmforget.data.types import TaskExample, UpstreamExample, require, to_messages
from lmforget.errors import LmforgetError

SUBSET_FIELDS = ("dataset", "source")


def subset(rec: Record, where: str, required: bool = True) -> str:
    """The mixture subset a record comes from: 'dataset' (Tulu v2) or 'source' (Tulu 3 / OLMo-2)."""
    for key in SUBSET_FIELDS:
        if rec.get(key) not in (None, ""):
            return str(rec[key])
    if required:
        raise LmforgetError(f"{where}: missing required field 'dataset' (Tulu v2) or 'source' (Tulu 3 / "
                            f"OLMo-2 mixtures) (has: {', '.join(map(str, rec)) or 'nothing'})")
    return ""


@register_upstream("tulu")
def read_upstream(spec: UpstreamSpec) -> Iterator[UpstreamExample]:
    for i, (rec, where) in enumerate(records(spec)):
        msgs = to_messages(require(rec, "messages", where, list), where)
        ident = rec.get("id")
        yield UpstreamExample(id=str(ident) if ident not in (None, "") else f"tulu-{i}",
                              messages=msgs, source=subset(rec, where, required=False))


@register_tasks("tulu")
def read_tasks(spec: TaskSpec) -> Iterator[RawTask]:
    pools = TaskPools(spec, group="tulu")
    for rec, where in records(spec):
        name = subset(rec, where)
        if pools.wants(name):
            pools.add(name, lambda rec=rec, where=where: TaskExample(
                to_messages(require(rec, "messages", where, list), where)))
    yield from pools.tasks()
