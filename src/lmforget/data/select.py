"""Seeded choices and text cuts shared by every adapter.

Upstream selection lives in `lmforget.data.sampling` (streamed, bounded, parallel over shards);
the reservoir here keeps per-task pools bounded. Per-task splits are seeded by (seed, task name), so
adding or removing a task never changes another task's examples.
"""

from __future__ import annotations

import re
from typing import Callable, Generic, Iterable, Sequence, TypeVar

import numpy as np

from lmforget.errors import LmforgetError
from lmforget.seeding import task_rng  # noqa: F401  (adapters import it from here)

T = TypeVar("T")


def first_n(items: Iterable[T], n: int | None) -> list[T]:
    out: list[T] = []
    if n == 0:
        return out
    for item in items:
        out.append(item)
        if n is not None and len(out) >= n:
            break
    return out


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


def reservoir(items: Iterable[T], n: int, seed: int) -> list[T]:
    """A uniform random sample of n items from a stream (Algorithm R), in stream order."""
    res: Reservoir[T] = Reservoir(n, np.random.default_rng(seed))
    for item in items:
        res.add(item)
    return res.items()


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


def slug(text: str) -> str:
    """A stable, readable id: lower case, runs of non-alphanumerics -> '_'."""
    s = re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")
    return s or "x"


def chunk_words(text: str, size: int) -> list[str]:
    words = text.split()
    return [" ".join(words[i:i + size]) for i in range(0, len(words), size)]


def cut_words(text: str, n: int) -> str:
    """The first n whitespace-separated words, keeping the original spacing up to them."""
    matches = list(re.finditer(r"\S+", text))
    if len(matches) <= n:
        return text
    return text[: matches[n - 1].end()]


def cut_chars(text: str, n: int) -> str:
    """At most n characters, ending at a word boundary when one exists in the second half."""
    if len(text) <= n:
        return text
    head = text[:n]
    space = head.rfind(" ")
    return head[:space] if space > n // 2 else head


def cut_tokens(texts: list[str], n: int, tokenizer) -> list[str]:
    """Each text cut to its first n tokens (no special tokens), as text; needs a tokenizer."""
    if tokenizer is None:
        raise LmforgetError("'max_tokens' needs the model's tokenizer; pass tokenizer= or use max_words")
    out = []
    fast = getattr(tokenizer, "is_fast", False)
    for text in texts:
        if fast:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            out.append(text if len(offsets) <= n else text[: offsets[n - 1][1]])
        else:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            out.append(text if len(ids) <= n else tokenizer.decode(ids[:n]))
    return out
