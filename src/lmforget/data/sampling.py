"""Seeded sampling of upstream examples from many shards: streamed, bounded, in parallel.

Every example gets a uniform random key from a generator seeded by (seed, shard number). A
`fraction` keeps the examples whose key is below it (a Bernoulli sample, e.g. Dolma's 1%); `n`
keeps the n smallest keys (a uniform sample without replacement: bottom-k). A key depends only on
the seed, the shard and the position in the shard, so the sample is the same whatever the number
of worker processes, and each worker holds at most n examples whatever the corpus size. Chosen
examples keep corpus order (shard, then position). `select: first` reads in order and stops as
soon as n examples are found (the Pile's "first 10,000 documents").
"""

from __future__ import annotations

import heapq
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from lmforget.data.readers import expand_paths, is_saved_dataset
from lmforget.data.select import first_n
from lmforget.data.specs import UpstreamSpec
from lmforget.data.types import UpstreamExample

# Formats whose example ids come from the records (not stream positions), so shards can be read apart.
SHARDABLE = {"dolma"}
WORKERS_ENV = "LMFORGET_DATA_WORKERS"
_KEY_BLOCK = 8192

Stream = Callable[[UpstreamSpec, Counter], Iterable[UpstreamExample]]


@dataclass
class ShardSample:
    """What one shard contributes: (key, position, example) triples kept, plus what was seen."""

    kept: list[tuple[float, int, UpstreamExample]]
    counts: Counter = field(default_factory=Counter)  # records read and dropped, by reason


def _keys(seed: int, shard: int) -> Iterator[float]:
    rng = np.random.default_rng([seed, shard])
    while True:
        yield from rng.random(_KEY_BLOCK).tolist()


def sample_stream(examples: Iterable[UpstreamExample], n: int | None, fraction: float | None,
                  seed: int, shard: int = 0, counts: Counter | None = None) -> ShardSample:
    """Bottom-n keys (and keys < fraction) of one stream, holding at most n examples."""
    out = ShardSample([], Counter() if counts is None else counts)
    heap: list[tuple[float, int, UpstreamExample]] = []  # max-heap on key via negation
    limit = 1.0 if fraction is None else fraction
    for pos, (key, ex) in enumerate(zip(_keys(seed, shard), examples)):
        if key >= limit:
            continue
        if n is None:
            heap.append((-key, pos, ex))
        elif len(heap) < n:
            heapq.heappush(heap, (-key, pos, ex))
        elif -heap[0][0] > key:
            heapq.heapreplace(heap, (-key, pos, ex))
    out.kept = [(-k, pos, ex) for k, pos, ex in heap]
    return out


def shard_paths(spec: UpstreamSpec) -> list[str] | None:
    """The files of a shardable local spec (more than one), else None: the spec is read as one stream."""
    if spec.format not in SHARDABLE or spec.path is None:
        return None
    from lmforget.data.registry import local_path

    path = local_path(spec)
    if is_saved_dataset(Path(path).expanduser()):
        return None
    files = expand_paths(path)
    return [str(f) for f in files] if len(files) > 1 else None


def default_workers(n_shards: int) -> int:
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        return max(1, int(env))
    return max(1, min(n_shards, os.cpu_count() or 1))


def _shard_job(args: tuple[UpstreamSpec, int]) -> ShardSample:
    spec, shard = args
    from lmforget.data.load import upstream_stream  # registers the adapters in a fresh process

    counts: Counter = Counter()
    return sample_stream(upstream_stream(spec, counts), spec.n, spec.fraction, spec.seed, shard, counts)


def select_upstream(spec: UpstreamSpec, stream: Stream, workers: int | None = None
                    ) -> tuple[list[UpstreamExample], Counter]:
    """The chosen examples of a spec, in corpus order, and the counts of what was read and dropped."""
    counts: Counter = Counter()
    if spec.select == "first" or (spec.n is None and spec.fraction is None):
        return first_n(stream(spec, counts), spec.n), counts
    shards = shard_paths(spec)
    if shards is None:
        samples = [sample_stream(stream(spec, counts), spec.n, spec.fraction, spec.seed, 0, counts)]
    else:
        jobs = [(spec.model_copy(update={"path": path}), k) for k, path in enumerate(shards)]
        workers = default_workers(len(shards)) if workers is None else max(1, workers)
        if workers > 1:
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
                samples = list(pool.map(_shard_job, jobs))
        else:
            samples = [_shard_job(job) for job in jobs]
    kept = [(key, k, pos, ex) for k, s in enumerate(samples) for key, pos, ex in s.kept]
    for s in samples:
        counts.update(s.counts)
    if spec.n is not None and len(kept) > spec.n:
        kept = heapq.nsmallest(spec.n, kept, key=lambda t: t[0])
    kept.sort(key=lambda t: (t[1], t[2]))
    return [ex for _, _, _, ex in kept], counts
