"""Natural-Instructions v1 as packaged in BIG-bench: one task.json per subtask.

Layout: bigbench/benchmark_tasks/natural_instructions/subtaskNNN_<name>/task.json, each holding
"task_prefix" (the written definition, ending in the prompt), "description", "keywords" and
"examples": [{"input", "target": [str, ...]}]. The definition is the prefix of every prompt and
the first target is the completion. Members are read straight from the .tar.gz as a stream (no
extraction, one pass of ~4 s over the 358 MB archive); unwanted subtasks are never parsed.
Task names drop the 'subtaskNNN_' prefix; either form selects a task. Group "natural-instructions".
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import IO, Iterator

from lmforget.data.pools import sample
from lmforget.data.registry import RawTask, register_tasks, skipped
from lmforget.data.specs import TaskSpec
from lmforget.data.types import TaskExample, require
from lmforget.errors import LmforgetError
from lmforget.seeding import task_rng

MEMBER = re.compile(r"(?:^|/)natural_instructions/(subtask\d+_[^/]+)/task\.json$")
PREFIX = re.compile(r"^subtask\d+_")
GROUP = "natural-instructions"


def short_name(dirname: str) -> str:
    return PREFIX.sub("", dirname)


def _wanted(spec: TaskSpec) -> set[str] | None:
    if not spec.tasks:
        return None
    return {short_name(t) for t in spec.tasks}


def parse_task(fh: IO[bytes], dirname: str, where: str, spec: TaskSpec) -> RawTask:
    try:
        doc = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LmforgetError(f"{where}: malformed JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise LmforgetError(f"{where}: expected a JSON object")
    definition = (doc.get("task_prefix") or doc.get("description") or "").strip()
    examples = require(doc, "examples", where, list)
    name = short_name(dirname)
    cap = None if spec.n_train is None else spec.n_train + spec.n_eval
    # Build only the examples that can be kept: a subtask holds up to 6,500 long passages.
    chosen = range(len(examples)) if cap is None else sorted(sample(range(len(examples)), cap,
                                                                    task_rng(spec.seed, "pool:" + name)))
    pool = []
    for i in chosen:
        ex = examples[i]
        at = f"{where}, example {i}"
        if not isinstance(ex, dict):
            raise LmforgetError(f"{at}: expected an object with 'input' and 'target'")
        target = require(ex, "target", at, (str, list))
        if isinstance(target, list):
            if not target:
                raise LmforgetError(f"{at}: empty 'target' list")
            target = str(target[0])
        text = require(ex, "input", at)
        prompt = f"{definition}\n\n{text}" if definition else text
        pool.append(TaskExample.from_prompt(prompt, target.strip()))
    return RawTask(name, GROUP, pool, None,
                   {"aliases": [dirname], "n_available": len(examples), "keywords": doc.get("keywords", [])})


def _iter_tar(path: Path, spec: TaskSpec) -> Iterator[RawTask]:
    wanted = _wanted(spec)
    found = False
    try:
        with tarfile.open(path, "r|*") as tf:  # stream mode: one sequential pass, no seeking
            for member in tf:
                m = MEMBER.search(member.name)
                if not m or not member.isfile():
                    continue
                found = True
                if wanted is not None and short_name(m.group(1)) not in wanted:
                    yield skipped(short_name(m.group(1)))
                    continue
                fh = tf.extractfile(member)
                assert fh is not None
                yield parse_task(fh, m.group(1), f"{path}:{member.name}", spec)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise LmforgetError(f"{path}: cannot read the archive ({exc})") from None
    if not found:
        raise LmforgetError(f"{path}: no natural_instructions/subtask*/task.json members")


def _iter_dir(root: Path, spec: TaskSpec) -> Iterator[RawTask]:
    wanted = _wanted(spec)
    files = sorted(p for p in root.rglob("task.json") if MEMBER.search(p.as_posix()))
    if not files:
        raise LmforgetError(f"{root}: no natural_instructions/subtask*/task.json files")
    for f in files:
        dirname = f.parent.name
        if wanted is None or short_name(dirname) in wanted:
            with open(f, "rb") as fh:
                yield parse_task(fh, dirname, str(f), spec)
        else:
            yield skipped(short_name(dirname))


@register_tasks("natural-instructions", own_location=True)
def read_tasks(spec: TaskSpec) -> Iterator[RawTask]:
    if spec.dataset is not None:
        raise LmforgetError("format 'natural-instructions' reads the bigbench archive or a folder; use 'path'")
    if spec.path is None:
        from lmforget.resources import bigbench_archive

        path = bigbench_archive()
    else:
        from lmforget.resources import resolve_path

        path = Path(resolve_path(spec.path))
    if path.is_dir():
        yield from _iter_dir(path, spec)
    elif path.is_file():
        yield from _iter_tar(path, spec)
    else:
        raise LmforgetError(f"{path}: no such file or directory")
