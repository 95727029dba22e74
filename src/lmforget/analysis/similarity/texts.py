"""The text of an upstream or task example as a similarity measure sees it, and the seeded choice of
which training examples of a task stand for it."""

from __future__ import annotations

import numpy as np

from lmforget.data.types import TaskExample, TaskSet, UpstreamExample
from lmforget.seeding import task_rng


def upstream_text(example: UpstreamExample) -> str:
    if example.text is not None:
        return example.text
    return "\n\n".join(m.content for m in example.messages or ())


def task_text(example: TaskExample) -> str:
    return "\n\n".join(m.content for m in example.messages)


def task_examples(task: TaskSet, limit: int | None, seed: int) -> list[TaskExample]:
    """The task's training examples, a seeded subsample of `limit` of them when it has more."""
    if limit is None or len(task.train) <= limit:
        return list(task.train)
    rng = task_rng(seed, task.name)
    return [task.train[i] for i in np.sort(rng.choice(len(task.train), size=limit, replace=False))]
