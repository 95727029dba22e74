"""BIG-Bench Hard: one file per task, {"input", "target"} examples; group "bbh".

Both public layouts read: today's `<task>.json` ({"canary": ..., "examples": [...]}) and the
first release's `<task>.jsonl` (one example per line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from lmforget.data.files import expand_paths, file_type, iter_json, iter_jsonl
from lmforget.data.registry import RawTask, local_path, register_tasks, skipped
from lmforget.data.specs import TaskSpec
from lmforget.data.types import TaskExample, require
from lmforget.errors import LmforgetError

SUFFIXES = (".gz", ".zst", ".jsonl", ".json")


def task_name(path: Path) -> str:
    name = path.name
    for suffix in SUFFIXES:
        name = name.removesuffix(suffix)
    return name


@register_tasks("bbh")
def read_tasks(spec: TaskSpec) -> Iterator[RawTask]:
    if spec.path is None:
        raise LmforgetError("format 'bbh' reads the released files; give 'path' (a folder of <task>.json "
                            "or <task>.jsonl files, or one file)")
    wanted = set(spec.tasks) if spec.tasks else None
    for f in expand_paths(local_path(spec), kinds=("json", "jsonl")):
        name = task_name(Path(f))
        if wanted is not None and name not in wanted:
            yield skipped(name)
            continue
        rows = iter_jsonl(f) if file_type(f) == "jsonl" else iter_json(f, key="examples")
        pool = [TaskExample.from_prompt(require(rec, "input", where),
                                        str(require(rec, "target", where, (str, int, float))))
                for rec, where in rows]
        yield RawTask(name, "bbh", pool)
