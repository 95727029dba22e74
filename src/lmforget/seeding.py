"""Seeds derived from names: the same task gets the same random draws in every process and every run.

A name becomes a number through CRC-32 of its UTF-8 bytes: stable across processes (unlike `hash()`),
and distinct for anagrams (unlike a sum of character codes). Generators are numpy's, seeded with
(seed, name key, stream...), so adding or removing a task never changes another task's draws.
"""

from __future__ import annotations

import zlib

import numpy as np


def name_key(name: str) -> int:
    """A stable 32-bit number for a name."""
    return zlib.crc32(name.encode("utf-8"))


def task_rng(seed: int, name: str, *stream: int) -> np.random.Generator:
    """A generator for one named task (and an optional sub-stream), independent of every other task's."""
    return np.random.default_rng([seed, name_key(name), *stream])


def task_seed(seed: int, name: str) -> int:
    """An integer seed (31 bits, fits torch and numpy) for one named task, from the same key as `task_rng`."""
    return int(np.random.SeedSequence([seed, name_key(name)]).generate_state(1)[0] >> 1)
