"""The storage policy: which upstream examples may be replayed (the pool) and which never are.

docs/protocol.md section 6: a fixed-seed held-out set is never replayed and is the evaluation set; the
replay pool is the rest. One function draws it, from the ids alone, so the study, the online probes
and `replay-set` all get the same held-out set for the same seed (the reference code drew its
held-out and evaluation sets with different seeds, a defect we do not copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from lmforget.errors import LmforgetError


def _order(ids: np.ndarray, seed: int) -> np.ndarray:
    """A seeded ranking of the ids that does not depend on their order in the file."""
    by_id = np.argsort(ids, kind="stable")
    return by_id[np.random.default_rng([seed, 0]).permutation(len(ids))]


@dataclass(frozen=True)
class HeldoutSplit:
    """Column indices of the held-out (evaluation) set and of the replay pool, both sorted."""

    ids: np.ndarray
    heldout: np.ndarray
    pool: np.ndarray
    seed: int

    @property
    def heldout_ids(self) -> list[str]:
        return [str(x) for x in self.ids[self.heldout]]

    @property
    def pool_ids(self) -> list[str]:
        return [str(x) for x in self.ids[self.pool]]

    def check_replayable(self, ids: Iterable[str]) -> None:
        """Raise if any id is held out: the evaluation set must never enter a mixture."""
        check_disjoint(ids, self.heldout_ids)


def check_disjoint(replay_ids: Iterable[str], heldout_ids: Iterable[str]) -> None:
    """Refuse a replay mixture that would contain an evaluation (held-out) example."""
    clash = sorted(set(map(str, replay_ids)) & set(map(str, heldout_ids)))
    if clash:
        raise LmforgetError(f"{len(clash)} replay example(s) are in the held-out evaluation set "
                            f"(e.g. {clash[0]!r}); held-out examples must never be replayed")


def split_heldout(ids: Sequence[str], size: int, seed: int = 0) -> HeldoutSplit:
    """Draw `size` held-out ids with `seed`; the pool is every other id.

    The draw permutes the sorted ids with `seed`, so it is the same for the same ids in any order,
    and a larger `size` keeps the smaller held-out set inside it.
    """
    ids = np.asarray([str(i) for i in ids])
    n = len(ids)
    if size < 1:
        raise LmforgetError(f"held-out size must be at least 1 (got {size})")
    if size >= n:
        raise LmforgetError(f"held-out size {size} is not smaller than the {n} upstream examples; "
                            f"lower replay.heldout so that some examples are left to replay")
    if len(set(ids.tolist())) != n:
        raise LmforgetError("upstream ids are not unique; the held-out split needs unique ids")
    order = _order(ids, seed)
    heldout = np.sort(order[:size])
    pool = np.sort(order[size:])
    return HeldoutSplit(ids=ids, heldout=heldout, pool=pool, seed=seed)


def draw_probes(split: HeldoutSplit, n: int, seed: int, usable: np.ndarray | None = None) -> np.ndarray:
    """`n` fixed probe columns from the pool (those with defined scores when `usable` is given)."""
    pool = split.pool if usable is None else split.pool[usable[split.pool]]
    if n > len(pool):
        raise LmforgetError(f"{n} probe examples asked for but the replay pool holds {len(pool)}; "
                            "lower replay.probes")
    rng = np.random.default_rng([seed, 1])
    return np.sort(rng.choice(pool, size=n, replace=False))
