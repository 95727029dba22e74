"""One small name -> object registry, shared by data formats, completers and scoring backends.

Each kind of plug-in keeps one `Registry`; implementations add themselves with the `register(name)`
decorator in their own module, and the package that owns the registry imports those modules once.
Looking up an unknown name is an input error (LmforgetError) that lists the choices. `one_of` checks a
typed setting (a recipe field, a data spec's format) against such a closed set where it is defined, so
adding a choice is one edit.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, TypeVar

from pydantic import AfterValidator

from lmforget.errors import LmforgetError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named implementations of one kind (`kind` names it in error messages, e.g. "upstream format")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make `obj` available as `name`; a second, different object under one name is a bug."""

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise LmforgetError(f"unknown {self.kind} {name!r}; choose from {', '.join(self.names())}") from None

    __getitem__ = get

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def one_of(module: str, names: str, what: str) -> AfterValidator:
    """A closed set of choices defined once, as `module.names` next to what implements them (a tuple or a
    `Registry`); imported when a value is checked, so a recipe module does not load every implementation."""

    def check(value: str) -> str:
        choices = getattr(importlib.import_module(module), names)
        if value not in choices:
            raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")
        return value

    return AfterValidator(check)
