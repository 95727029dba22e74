"""FLAN v2 records: 'inputs', 'targets' and the task name in 'task' / 'task_name' / '_task_name'.

One task per FLAN task (group "flan"). A version suffix such as 'glue_qqp:2.0.0' is dropped so
that names match the paper's task list.
"""

from __future__ import annotations

from typing import Iterator

from lmforget.data.files import Record
from lmforget.data.pools import TaskPools
from lmforget.data.registry import RawTask, records, register_tasks
from lmforget.data.specs import TaskSpec
from lmforget.data.types import TaskExample, require
from lmforget.errors import LmforgetError

NAME_FIELDS = ("task", "task_name", "_task_name")


def task_name(rec: Record, where: str) -> str:
    for key in NAME_FIELDS:
        if rec.get(key):
            return str(rec[key]).split(":", 1)[0]
    raise LmforgetError(f"{where}: missing required field 'task' (or 'task_name' / '_task_name')")


@register_tasks("flan")
def read_tasks(spec: TaskSpec) -> Iterator[RawTask]:
    pools = TaskPools(spec, group="flan")
    for rec, where in records(spec):
        name = task_name(rec, where)
        if pools.wants(name):
            pools.add(name, lambda rec=rec, where=where: TaskExample.from_prompt(
                require(rec, "inputs", where), require(rec, "targets", where)))
    yield from pools.tasks()
