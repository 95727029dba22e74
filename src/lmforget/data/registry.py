"""Adapters by format name: each source family registers how its records become examples.

An upstream adapter yields `UpstreamExample`s in file order; a task adapter yields `RawTask`s
(every example of a task, plus a natural held-out pool where the source has one). Selection,
cutting and splitting are done once, in `lmforget.data.load`, for every format alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from lmforget.data.files import Record, iter_path
from lmforget.data.hub import iter_hub
from lmforget.data.specs import TaskSpec, UpstreamSpec, _Source
from lmforget.data.types import TaskExample, UpstreamExample
from lmforget.errors import LmforgetError
from lmforget.registry import Registry

UpstreamAdapter = Callable[[UpstreamSpec], Iterator[UpstreamExample]]


@dataclass
class RawTask:
    """All examples of one task before sampling; `held_out` is the source's own eval split."""

    name: str
    group: str
    pool: list[TaskExample]
    held_out: list[TaskExample] | None = None
    meta: dict = field(default_factory=dict)


def skipped(name: str) -> RawTask:
    """A task an adapter saw but did not read (not among `tasks`): only its name is reported."""
    return RawTask(name, "", [], None, {"skipped": True})


TaskAdapter = Callable[[TaskSpec], Iterator[RawTask]]

UPSTREAM: Registry[UpstreamAdapter] = Registry("upstream format")
TASKS: Registry[TaskAdapter] = Registry("task format")
# Formats that find their data themselves (a shipped or fetched resource), so a spec may leave out `path`.
OWN_LOCATION: set[str] = set()


def register_upstream(name: str, *, own_location: bool = False) -> Callable[[UpstreamAdapter], UpstreamAdapter]:
    """Decorator for adapter modules: @register_upstream("dolma"); `own_location`: `path` is optional."""
    if own_location:
        OWN_LOCATION.add(name)
    return UPSTREAM.register(name)


def register_tasks(name: str, *, own_location: bool = False) -> Callable[[TaskAdapter], TaskAdapter]:
    """Decorator for adapter modules: @register_tasks("flan"); `own_location`: `path` is optional."""
    if own_location:
        OWN_LOCATION.add(name)
    return TASKS.register(name)


def records(spec: _Source) -> Iterator[tuple[Record, str]]:
    """The raw records a spec points at: local files/saved data set, or a hub data set."""
    if spec.dataset is not None:
        return iter_hub(spec.dataset, spec.subset, spec.split)
    return iter_path(local_path(spec), spec.split)


def local_path(spec: _Source) -> str:
    """The spec's local path with 'package:' (lmforget's own data) and '~' expanded."""
    from lmforget.resources import resolve_path

    if spec.path is None:
        raise LmforgetError(f"format {spec.format!r} needs 'path'")
    return resolve_path(spec.path)
