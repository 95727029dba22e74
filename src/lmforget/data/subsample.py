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
import tempfile
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np
import orjson

from lmforget.data.files import LineGate, expand_paths, is_saved_dataset, line_gate
from lmforget.data.hub import hub_snapshot, snapshot_files
from lmforget.data.specs import UpstreamSpec
from lmforget.data.types import UpstreamExample
from lmforget.errors import LmforgetError

# Formats whose example ids come from the records (not stream positions), so shards can be read apart.
SHARDABLE = {"dolma"}
WORKERS_ENV = "LMFORGET_DATA_WORKERS"
_KEY_BLOCK = 8192
PARALLEL_MIN_BYTES = 256 * 2**20  # files on disk; below this, one process reads the shards faster

T = TypeVar("T")


def first_n(items: Iterable[T], n: int | None) -> list[T]:
    """The first n items of a stream (all of them when n is None), read no further than needed."""
    out: list[T] = []
    if n == 0:
        return out
    for item in items:
        out.append(item)
        if n is not None and len(out) >= n:
            break
    return out


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
                  seed: int, shard: int = 0, counts: Counter | None = None, below: float = 1.0,
                  gate: LineGate | None = None) -> ShardSample:
    """Bottom-n keys (and keys < fraction) of one stream, holding at most n examples.

    `below` is a key no kept example can reach (the n-th smallest key of the shards merged so far):
    it only prunes examples that could not be in the final sample, so the result does not change.
    With a `gate` (one example per record), JSON lines draw their keys as they are read, and lines
    that cannot be chosen are not even parsed.
    """
    out = ShardSample([], Counter() if counts is None else counts)
    heap: list[tuple[float, int, UpstreamExample]] = []  # max-heap on key via negation
    limit = min(below, 1.0 if fraction is None else fraction)
    keys = gate.keys if gate is not None else _keys(seed, shard)
    if gate is not None:
        gate.limit = limit
    for pos, ex in enumerate(examples):
        if gate is not None and gate.key is not None:
            key, gate.key = gate.key, None
        else:  # not read from JSON lines (Parquet, CSV, a JSON document): draw here
            key = next(keys)
        if key >= limit:
            continue
        if n is None:
            heap.append((-key, pos, ex))
            continue
        if len(heap) < n:
            heapq.heappush(heap, (-key, pos, ex))
        elif -heap[0][0] > key:
            heapq.heapreplace(heap, (-key, pos, ex))
        if len(heap) >= n and gate is not None:
            gate.limit = min(limit, -heap[0][0])
    if gate is not None and gate.unparsed:
        out.counts["read"] += gate.unparsed
        out.counts["beyond the sample (not parsed)"] += gate.unparsed
    out.kept = [(-k, pos, ex) for k, pos, ex in heap]
    return out


def shard_specs(spec: UpstreamSpec) -> list[UpstreamSpec] | None:
    """One spec per file of a shardable spec with more than one file (local files, or the local copy
    of a hub data set), else None: the spec is read as one stream."""
    if spec.format not in SHARDABLE:
        return None
    if spec.dataset is not None:
        root = hub_snapshot(spec.dataset)
        if root is None:
            return None
        files = snapshot_files(root, spec.dataset, spec.subset, spec.split)
    else:
        from lmforget.data.registry import local_path

        path = local_path(spec)
        if is_saved_dataset(Path(path).expanduser()):
            return None
        files = expand_paths(path)
    if len(files) < 2:
        return None
    return [spec.model_copy(update={"path": str(f), "dataset": None, "subset": None, "split": None}) for f in files]


def default_workers(shards: list[UpstreamSpec]) -> int:
    """LMFORGET_DATA_WORKERS, else one per CPU; one when the shards are too small to pay for the
    processes (each imports lmforget, about 0.5 s of CPU)."""
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise LmforgetError(f"{WORKERS_ENV}={env!r}: expected a number of worker processes") from None
    if sum(os.path.getsize(s.path or "") for s in shards) < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(len(shards), os.cpu_count() or 1))


# A spec's examples after its adapter and filters, counting what was dropped (`lmforget.data.load.upstream_stream`,
# handed in by the caller: a top-level function, so a worker process unpickles it by importing its module, which
# registers the adapters there).
Stream = Callable[[UpstreamSpec, Counter], Iterator[UpstreamExample]]


def _sample(stream: Stream, spec: UpstreamSpec, shard: int = 0, below: float = 1.0) -> ShardSample:
    """One shard's (or a whole non-sharded spec's) sample; also the job a worker process runs."""
    counts: Counter = Counter()
    if spec.chunk_words is not None:  # several examples per record: keys are drawn per example
        return sample_stream(stream(spec, counts), spec.n, spec.fraction, spec.seed, shard, counts, below)
    with line_gate(LineGate(_keys(spec.seed, shard))) as gate:
        return sample_stream(stream(spec, counts), spec.n, spec.fraction, spec.seed, shard, counts, below, gate)


def _sample_to_file(stream: Stream, spec: UpstreamSpec, shard: int, below: float, folder: str) -> ShardSample:
    """A worker's job: sample one shard, write the kept examples (in shard order) as JSON lines to
    `folder`, and send back only their keys and positions, so the main process never holds more
    than the final sample."""
    sample = _sample(stream, spec, shard, below)
    kept = sorted(sample.kept, key=lambda t: t[1])
    with open(os.path.join(folder, f"{shard}.jsonl"), "wb") as fh:
        for _, pos, ex in kept:
            fh.write(orjson.dumps({"pos": pos, **ex.to_json()}) + b"\n")
    return ShardSample([(key, pos, None) for key, pos, _ in kept], sample.counts)


def _read_chosen(folder: str, shard: int, positions: set[int]) -> list[tuple[int, UpstreamExample]]:
    from lmforget.data.records import upstream_example

    out = []
    path = os.path.join(folder, f"{shard}.jsonl")
    with open(path, "rb") as fh:
        for line in fh:
            rec = orjson.loads(line)
            if rec["pos"] in positions:
                out.append((rec["pos"], upstream_example(rec, path, default_id=str(rec["id"]))))
    return out


class _Merged:
    """The global bottom-n (or every kept example when n is None) of the shards merged so far.

    Entries are (-key, shard, position, example); the example is None when it waits in a worker's file.
    """

    def __init__(self, n: int | None):
        self.n = n
        self.heap: list[tuple[float, int, int, UpstreamExample | None]] = []
        self.counts: Counter = Counter()

    @property
    def below(self) -> float:
        return -self.heap[0][0] if self.n is not None and len(self.heap) >= self.n else 1.0

    def add(self, shard: int, sample: ShardSample) -> None:
        self.counts.update(sample.counts)
        for key, pos, ex in sample.kept:
            item = (-key, shard, pos, ex)
            if self.n is None or len(self.heap) < self.n:
                heapq.heappush(self.heap, item)
            elif key < -self.heap[0][0]:
                heapq.heapreplace(self.heap, item)

    def examples(self, folder: str | None = None) -> list[UpstreamExample]:
        """The chosen examples in corpus order, read back from the workers' files when in `folder`."""
        order = sorted(self.heap, key=lambda t: (t[1], t[2]))
        if folder is None:
            return [ex for _, _, _, ex in order]
        wanted: dict[int, set[int]] = {}
        for _, shard, pos, _ in order:
            wanted.setdefault(shard, set()).add(pos)
        out: list[UpstreamExample] = []
        for shard in sorted(wanted):
            out += [ex for _, ex in sorted(_read_chosen(folder, shard, wanted[shard]), key=lambda t: t[0])]
        return out


def select_upstream(stream: Stream, spec: UpstreamSpec,
                    workers: int | None = None) -> tuple[list[UpstreamExample], Counter]:
    """The chosen examples of a spec, in corpus order, and the counts of what was read and dropped.

    Shards go to a pool of `workers` processes a few at a time; each new shard is told the n-th
    smallest key merged so far, so it keeps only examples that can still be chosen. Workers leave
    their examples in a temporary folder and send back keys, so the main process holds the final
    sample alone, whatever the number of shards.
    """
    if spec.select == "first" or (spec.n is None and spec.fraction is None):
        counts: Counter = Counter()
        return first_n(stream(spec, counts), spec.n), counts
    merged = _Merged(spec.n)
    specs = shard_specs(spec)
    if specs is None:
        merged.add(0, _sample(stream, spec))
        return merged.examples(), merged.counts
    workers = default_workers(specs) if workers is None else max(1, workers)
    if workers == 1:
        for k, shard_spec in enumerate(specs):
            merged.add(k, _sample(stream, shard_spec, k, merged.below))
        return merged.examples(), merged.counts
    with tempfile.TemporaryDirectory(prefix="lmforget-sample-") as folder, \
            ProcessPoolExecutor(min(workers, len(specs)), mp_context=get_context("spawn")) as pool:
        running: dict = {}
        todo = list(enumerate(specs))
        while todo or running:
            while todo and len(running) < workers:
                k, shard_spec = todo.pop(0)
                running[pool.submit(_sample_to_file, stream, shard_spec, k, merged.below, folder)] = k
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                merged.add(running.pop(future), future.result())
        return merged.examples(folder), merged.counts
