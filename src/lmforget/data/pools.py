"""A task's examples chosen with a seed: a pool cut into train and eval, n of a pool, and pools that stay
bounded while a large mixture streams past.

When only n_train + n_eval examples of each task are needed, each task keeps a seeded reservoir
(`Reservoir`) of that size instead of every example, so grouping Tulu's 326k chats needs little memory.
The kept examples are in stream order. Each task's choices are seeded by (seed, task name), so adding or
removing a task never changes another task's examples.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, Sequence, TypeVar

import numpy as np

from lmforget.data.registry import RawTask, skipped
from lmforget.data.specs import TaskSpec
from lmforget.data.types import TaskExample
from lmforget.seeding import task_rng

T = TypeVar("T")


class Reservoir(Generic[T]):
    """A uniform random sample of at most `n` items of a stream (Algorithm R), kept in stream order.

    `offer(make)` builds an item only when it is kept, so a stream of long documents costs memory
    for the n kept ones alone; `rng` is drawn from only once the reservoir is full. n=None keeps all.
    """

    def __init__(self, n: int | None, rng: np.random.Generator | None) -> None:
        self.n, self.rng, self.seen = n, rng, 0
        self._keep: list[tuple[int, T]] = []

    def offer(self, make: Callable[[], T]) -> None:
        i, self.seen = self.seen, self.seen + 1
        if self.n is None or i < self.n:
            self._keep.append((i, make()))
            return
        j = int(self.rng.integers(0, i + 1))
        if j < self.n:
            self._keep[j] = (i, make())

    def add(self, item: T) -> None:
        self.offer(lambda: item)

    def items(self) -> list[T]:
        return [item for _, item in sorted(self._keep, key=lambda pair: pair[0])]


def split_pool(pool: Sequence[T], n_train: int | None, n_eval: int,
               rng: np.random.Generator) -> tuple[list[T], list[T]]:
    """Shuffle one pool and cut it into train (first) and eval (next) parts."""
    order = rng.permutation(len(pool))
    if n_train is None:
        n_train = max(len(pool) - n_eval, 0)
    train = [pool[i] for i in order[:n_train]]
    ev = [pool[i] for i in order[n_train:n_train + n_eval]]
    return train, ev


def sample(pool: Sequence[T], n: int | None, rng: np.random.Generator) -> list[T]:
    """n items of a pool in a seeded random order (all of them, shuffled, when n is None)."""
    order = rng.permutation(len(pool))
    if n is not None:
        order = order[:n]
    return [pool[i] for i in order]




class TaskPools:
    def __init__(self, spec: TaskSpec, group: str):
        self.group = group
        self.wanted = set(spec.tasks) if spec.tasks else None
        self.cap = None if spec.n_train is None else spec.n_train + spec.n_eval
        self.seed = spec.seed
        self._pools: dict[str, Reservoir[TaskExample]] = {}
        self._skipped: set[str] = set()

    def wants(self, name: str) -> bool:
        if self.wanted is None or name in self.wanted:
            return True
        self._skipped.add(name)
        return False

    def add(self, name: str, make: Callable[[], TaskExample]) -> None:
        """Offer one example; `make` builds (and validates) it only when it is kept."""
        pool = self._pools.get(name)
        if pool is None:
            pool = self._pools[name] = Reservoir(self.cap, task_rng(self.seed, "pool:" + name))
        pool.offer(make)

    def tasks(self) -> Iterator[RawTask]:
        for name, pool in self._pools.items():
            yield RawTask(name, self.group, pool.items(), None, {"n_available": pool.seen})
        for name in sorted(self._skipped):
            yield skipped(name)
