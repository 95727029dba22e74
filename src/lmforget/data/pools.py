"""Per-task example pools that stay bounded while a large mixture streams past.

When only n_train + n_eval examples of each task are needed, each task keeps a seeded reservoir
(`select.Reservoir`) of that size instead of every example, so grouping Tulu's 326k chats needs
little memory. The kept examples are in stream order.
"""

from __future__ import annotations

from typing import Callable, Iterator

from lmforget.data.registry import RawTask, skipped
from lmforget.data.select import Reservoir
from lmforget.data.specs import TaskSpec
from lmforget.data.types import TaskExample
from lmforget.seeding import task_rng


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
