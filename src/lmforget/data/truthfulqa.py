"""TruthfulQA (generation CSV: Type, Category, Question, Best Answer, ...); one task per category.

Task names are the categories as slugs ("Misconceptions: Topical" -> misconceptions_topical);
the prompt is the question and the completion the 'Best Answer'. Group "truthfulqa".
"""

from __future__ import annotations

from typing import Iterator

from lmforget.data.cuts import slug
from lmforget.data.pools import TaskPools
from lmforget.data.registry import RawTask, records, register_tasks
from lmforget.data.specs import TaskSpec
from lmforget.data.types import TaskExample, require


@register_tasks("truthfulqa")
def read_tasks(spec: TaskSpec) -> Iterator[RawTask]:
    pools = TaskPools(spec, group="truthfulqa")
    for rec, where in records(spec):
        name = slug(require(rec, "Category", where))
        if pools.wants(name):
            pools.add(name, lambda rec=rec, where=where: TaskExample.from_prompt(
                require(rec, "Question", where).strip(), require(rec, "Best Answer", where).strip()))
    yield from pools.tasks()
