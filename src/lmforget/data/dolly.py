"""Dolly-15k: {"instruction", "context", "response", "category"}; one task per category.

The paper splits each category 80/20 into train/test with seed 0. Here each category gets its
own `numpy.random.default_rng(seed)` permutation (categories in sorted order); the first
floor(0.8 * n) examples train, the rest are held out. The context, when present, follows the
instruction in the prompt.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from lmforget.data.registry import RawTask, records, register_tasks
from lmforget.data.specs import TaskSpec
from lmforget.data.types import TaskExample, require

TRAIN_SHARE = 0.8


def split_category(examples: list[TaskExample], seed: int) -> tuple[list[TaskExample], list[TaskExample]]:
    order = np.random.default_rng(seed).permutation(len(examples))
    cut = int(np.floor(TRAIN_SHARE * len(examples)))
    return [examples[i] for i in order[:cut]], [examples[i] for i in order[cut:]]


@register_tasks("dolly")
def read_tasks(spec: TaskSpec) -> Iterator[RawTask]:
    by_cat: dict[str, list[TaskExample]] = {}
    for rec, where in records(spec):
        cat = require(rec, "category", where)
        instruction = require(rec, "instruction", where)
        response = require(rec, "response", where)
        context = rec.get("context") or ""
        prompt = f"{instruction}\n\n{context}" if context.strip() else instruction
        by_cat.setdefault(cat, []).append(TaskExample.from_prompt(prompt, response))
    for cat in sorted(by_cat):
        train, test = split_category(by_cat[cat], spec.seed)
        yield RawTask(cat, "dolly", train, test)
