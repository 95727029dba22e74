"""Replay method names: ``none``, ``random``, or a score source with an optional strategy.

Grammar: ``none`` | ``random`` | ``replay-only`` | SOURCE[:STRATEGY] where SOURCE is ``oracle``, ``file``,
``offline-COMPLETER`` or ``online-COMPLETER`` (COMPLETER = a name of `lmforget.predict`) and
STRATEGY one of `selection.STRATEGIES` (default: the recipe's ``replay.strategy``).
Examples: ``oracle``, ``oracle:top``, ``offline-mf:mir``, ``online-knn``.
``replay-only`` is a control: fine-tuning on random replay's examples alone, with random's steps,
which shows what the replay gradient does by itself (at the base weights self-sampled replay
teaches nothing in expectation; a handful of samples replayed many times is memorised).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lmforget.errors import LmforgetError
from lmforget.replay.selection import STRATEGIES


@dataclass(frozen=True)
class Method:
    name: str
    source: str  # none | random | replay-only | oracle | file | offline | online
    completer: str | None = None
    strategy: str = "random"

    @property
    def replays(self) -> bool:
        return self.source != "none"

    @property
    def slug(self) -> str:
        return method_slug(self.name)


def method_slug(name: str) -> str:
    """A method name as a file name (``oracle:top`` -> ``oracle_top``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def parse_method(name: str, default_strategy: str = "softmax") -> Method:
    """A method from its name; an unknown name is an input error that lists the choices."""
    from lmforget.predict import list_completers

    raw = name.strip()
    base, _, strategy = raw.partition(":")
    if base in ("none", "random", "replay-only"):
        if strategy:
            raise LmforgetError(f"method {raw!r}: {base!r} takes no strategy")
        return Method(raw, base, None, "random")
    strategy = strategy or default_strategy
    if strategy not in STRATEGIES:
        raise LmforgetError(f"method {raw!r}: unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if base in ("oracle", "file"):
        return Method(raw, base, None, strategy)
    kind, _, completer = base.partition("-")
    completers = list_completers("logppl")
    if kind in ("offline", "online") and completer in completers:
        return Method(raw, kind, completer, strategy)
    raise LmforgetError(f"unknown replay method {raw!r}; choose none, random, replay-only, oracle, file, "
                        f"offline-NAME or online-NAME with NAME in {', '.join(completers)} "
                        f"(optionally :STRATEGY, one of {', '.join(STRATEGIES)})")


def parse_methods(names: list[str] | str, default_strategy: str = "softmax") -> list[Method]:
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    if not names:
        raise LmforgetError("no replay method given")
    methods = [parse_method(n, default_strategy) for n in names]
    seen: set[str] = set()
    for m in methods:
        if m.name in seen:
            raise LmforgetError(f"replay method {m.name!r} is listed twice")
        seen.add(m.name)
    return methods
