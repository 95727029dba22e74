"""BIG-Bench Hard: one JSON file per task, {"examples": [{"input", "target"}, ...]}; group "bbh"."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from lmforget.data.readers import expand_paths, iter_json, require
from lmforget.data.registry import RawTask, local_path, register_tasks, skipped
from lmforget.data.specs import TaskSpec
from lmforget.data.types import TaskExample
from lmforget.errors import LmforgetError


@register_tasks("bbh")
def read_tasks(spec: TaskSpec) -> Iterator[RawTask]:
    if spec.path is None:
        raise LmforgetError("format 'bbh' reads the released JSON files; give 'path' (a folder or file)")
    wanted = set(spec.tasks) if spec.tasks else None
    for f in expand_paths(local_path(spec), kinds=("json",)):
        name = Path(f).name.removesuffix(".gz").removesuffix(".json")
        if wanted is not None and name not in wanted:
            yield skipped(name)
            continue
        pool = []
        for rec, where in iter_json(f, key="examples"):
            pool.append(TaskExample.from_prompt(require(rec, "input", where),
                                                str(require(rec, "target", where, (str, int, float)))))
        yield RawTask(name, "bbh", pool)
