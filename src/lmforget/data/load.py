"""Specs -> typed data: the one entry point recipes and the CLI use to get upstream and task sets.

Every format goes through the same steps, in the same order, so that options mean the same thing
everywhere: upstream = adapter -> source filter -> min_chars -> chunking -> seeded selection -> cuts;
tasks = adapter -> name filter -> max_tasks -> per-task seeded train/eval split.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

# Adapter modules register themselves by format name on import.
from lmforget.data import (  # noqa: F401
    bbh,
    dolly,
    dolma,
    flan,
    mmlu,
    natural_instructions,
    olmo_eval,
    openai_evals,
    pile,
    records,
    self_sampled,
    truthfulqa,
    tulu,
    wikipedia,
)
from lmforget.data.cuts import chunk_words, cut_chars, cut_tokens, cut_words
from lmforget.data.pools import sample, split_pool
from lmforget.data.registry import TASKS, UPSTREAM, RawTask
from lmforget.data.specs import TaskSpec, UpstreamSpec, task_spec, upstream_spec
from lmforget.data.subsample import select_upstream
from lmforget.data.types import TaskSet, UpstreamExample, UpstreamSet
from lmforget.errors import LmforgetError
from lmforget.seeding import task_rng

log = logging.getLogger(__name__)


def _describe(spec: UpstreamSpec | TaskSpec) -> str:
    where = spec.path if spec.path is not None else spec.dataset
    return f"{spec.format} ({where})" if where else spec.format


def _filtered(stream: Iterable[UpstreamExample], spec: UpstreamSpec, counts: Counter) -> Iterator[UpstreamExample]:
    """Source filter, min_chars and chunking; every example dropped is counted under its reason."""
    keep = set(spec.sources) if spec.sources else None
    min_chars, chunk = spec.min_chars, spec.chunk_words
    short = f"shorter than {min_chars} characters"
    read = other = empty = too_short = short_chunks = 0
    try:
        for ex in stream:
            read += 1
            if keep is not None and ex.source not in keep:
                other += 1
                continue
            text = ex.text
            if text is not None:
                if len(text) < min_chars:
                    too_short += 1
                    continue
                if not text or text.isspace():
                    empty += 1
                    continue
                if chunk is not None:
                    for k, piece in enumerate(chunk_words(text, chunk)):
                        if len(piece) >= min_chars:
                            yield replace(ex, id=f"{ex.id}#{k}", text=piece)
                        else:
                            short_chunks += 1
                    continue
            yield ex
    finally:  # also when the caller stops early (select: first)
        found = {"read": read, "from other sources": other, "empty text": empty, short: too_short,
                 f"chunks {short}": short_chunks}
        counts.update({why: n for why, n in found.items() if n})


def upstream_stream(spec: UpstreamSpec, counts: Counter | None = None) -> Iterator[UpstreamExample]:
    """The spec's examples after the adapter and the filters (sources, min_chars, chunks), streamed."""
    return _filtered(UPSTREAM[spec.format](spec), spec, Counter() if counts is None else counts)


def describe_counts(stats: dict[str, int]) -> str:
    """'read 1,200; skipped 30 shorter than 101 characters, ...; chose 100' for logs and the CLI."""
    skipped = [f"{n:,} {why}" for why, n in stats.items() if why not in ("read", "chosen") and n]
    return (f"read {stats.get('read', 0):,}" + (f"; skipped {', '.join(skipped)}" if skipped else "")
            + f"; chose {stats.get('chosen', 0):,}")


def load_upstream(spec: UpstreamSpec | dict[str, Any], tokenizer=None, workers: int | None = None) -> UpstreamSet:
    """The upstream set a spec describes; `tokenizer` is needed only for `max_tokens`.

    Random selection over many shards reads them in `workers` processes (default: one per CPU, or
    LMFORGET_DATA_WORKERS); the result does not depend on the number of workers. What the filters
    dropped is counted in the set's `stats` (and logged), never dropped silently.
    """
    spec = upstream_spec(spec)
    if spec.max_tokens is not None and tokenizer is None:
        raise LmforgetError("upstream spec: 'max_tokens' needs the model's tokenizer (or use 'max_words')")
    chosen, counts = select_upstream(upstream_stream, spec, workers)
    if not chosen:
        seen: set[str] = set()
        if spec.sources:  # name the sources present, so a typo is easy to see
            seen = {ex.source for ex in UPSTREAM[spec.format](spec)}
        hint = f" (sources present: {', '.join(sorted(seen)) or 'none'})" if spec.sources else ""
        raise LmforgetError(f"upstream {_describe(spec)}: no examples left after filtering{hint}")
    if spec.n is not None and len(chosen) < spec.n and spec.fraction is None:
        log.warning("upstream %s: asked for %d examples, found %d", _describe(spec), spec.n, len(chosen))
    chosen = _cut(chosen, spec, tokenizer)
    stats = {**counts, "chosen": len(chosen)}
    log.info("upstream %s: %s", _describe(spec), describe_counts(stats))
    return UpstreamSet(chosen, name=spec.name or spec.format, stats=stats)


def _cut(examples: list[UpstreamExample], spec: UpstreamSpec, tokenizer) -> list[UpstreamExample]:
    if spec.max_chars is None and spec.max_words is None and spec.max_tokens is None:
        return examples
    idx = [i for i, ex in enumerate(examples) if ex.text is not None]
    texts = [examples[i].text or "" for i in idx]
    if spec.max_words is not None:
        texts = [cut_words(t, spec.max_words) for t in texts]
    if spec.max_chars is not None:
        texts = [cut_chars(t, spec.max_chars) for t in texts]
    if spec.max_tokens is not None:
        texts = cut_tokens(texts, spec.max_tokens, tokenizer)
    out = list(examples)
    for i, t in zip(idx, texts, strict=True):
        out[i] = replace(out[i], text=t)
    return out


def _select_tasks(raws: list[RawTask], spec: TaskSpec) -> list[RawTask]:
    # Adapters that skip unwanted tasks early report their names, so a typo can list them.
    skipped = [r.name for r in raws if r.meta.get("skipped")]
    raws = [r for r in raws if not r.meta.get("skipped")]
    if spec.tasks:
        by_name: dict[str, RawTask] = {}
        for raw in raws:
            for alias in [raw.name, *raw.meta.get("aliases", [])]:
                by_name.setdefault(alias, raw)
        missing = [t for t in spec.tasks if t not in by_name]
        if missing:
            avail = sorted({r.name for r in raws} | set(skipped))
            shown = ", ".join(avail[:12]) + (", ..." if len(avail) > 12 else "")
            raise LmforgetError(f"tasks {_describe(spec)}: no task named {missing[0]!r} "
                                f"(available: {shown or 'none'})")
        raws = [by_name[t] for t in spec.tasks]
    if spec.max_tasks is not None and len(raws) > spec.max_tasks:
        pick = np.sort(np.random.default_rng(spec.seed).choice(len(raws), spec.max_tasks, replace=False))
        raws = [raws[i] for i in pick]
    return raws


def _task_set(raw: RawTask, spec: TaskSpec) -> TaskSet:
    rng = task_rng(spec.seed, raw.name)
    if raw.held_out is None:
        train, ev = split_pool(raw.pool, spec.n_train, spec.n_eval, rng)
    else:
        train, ev = sample(raw.pool, spec.n_train, rng), sample(raw.held_out, spec.n_eval, rng)
    if not train:
        raise LmforgetError(f"tasks {_describe(spec)}: task {raw.name!r} has no training examples "
                            f"({len(raw.pool)} in the source, n_eval={spec.n_eval})")
    meta = {k: v for k, v in raw.meta.items() if k not in ("aliases", "skipped")}
    return TaskSet(raw.name, spec.group or raw.group, train, ev, meta)


def load_task_family(spec: TaskSpec | dict[str, Any]) -> list[TaskSet]:
    """The tasks of one spec (one source family), in the source's order."""
    spec = task_spec(spec)
    raws = _select_tasks(list(TASKS[spec.format](spec)), spec)
    if not raws:
        raise LmforgetError(f"tasks {_describe(spec)}: no tasks found")
    return [_task_set(raw, spec) for raw in raws]


def load_tasks(specs: TaskSpec | dict[str, Any] | Sequence[TaskSpec | dict[str, Any]]) -> list[TaskSet]:
    """All tasks of one or more specs (the matrix rows, in order); names must be unique."""
    if isinstance(specs, (TaskSpec, dict)):
        specs = [specs]
    out: list[TaskSet] = []
    seen: dict[str, str] = {}
    for spec in specs:
        for task in load_task_family(spec):
            if task.name in seen:
                raise LmforgetError(f"task name {task.name!r} appears twice (groups {seen[task.name]!r} "
                                    f"and {task.group!r}); keep it in one spec only")
            seen[task.name] = task.group
            out.append(task)
    if not out:
        raise LmforgetError("no tasks: give at least one task spec")
    return out


def load_upstream_arg(arg: str) -> UpstreamSet:
    """An upstream set from a command-line argument: a records file, folder or glob, or FORMAT:PATH."""
    from pathlib import Path

    fmt, sep, path = arg.partition(":")
    if sep and fmt in UPSTREAM and not Path(arg).exists():
        return load_upstream({"format": fmt, **({"path": path} if path else {})})
    if not Path(arg).exists() and not any(ch in arg for ch in "*?["):
        raise LmforgetError(f"--upstream {arg}: no such file (give a records JSONL file, or FORMAT:PATH)")
    return load_upstream({"format": "records", "path": arg})
