"""Selection strategies: how the replay pool is ranked and sampled (Avalanche: "selection strategy").

Every strategy returns `n` distinct positions into the candidate array (sampling WITHOUT
replacement) and takes a seed. A higher score means "forgotten more", so targeted strategies
favour high scores:

- ``random``: uniform without replacement; ignores the scores.
- ``softmax``: successive sampling without replacement with probabilities softmax(score / T)
  (docs/protocol.md section 6, T = 0.1). Done exactly and in one vectorised step with the Gumbel-top-k
  trick: the n largest of score / T + Gumbel noise are a draw from that process. T -> inf gives
  uniform selection, T -> 0 gives top-n.
- ``top``: the n highest scores (ties by position).
- ``mir``: MIR-style best-of-G: shuffle the pool into n disjoint random groups of G and keep the
  MOST forgotten of each (the reference code kept the least forgotten, a defect). If the pool holds
  fewer than n x G candidates, groups shrink to floor(pool / n).
"""

from __future__ import annotations

import numpy as np

from lmforget.errors import LmforgetError

STRATEGIES = ("random", "softmax", "top", "mir")


def _check(scores: np.ndarray | None, n: int, n_candidates: int) -> None:
    if n < 0:
        raise LmforgetError(f"replay budget must be >= 0 (got {n})")
    if n > n_candidates:
        raise LmforgetError(f"replay budget {n} is larger than the replay pool ({n_candidates} examples)")
    if scores is not None and np.isnan(scores).any():
        bad = int(np.flatnonzero(np.isnan(scores))[0])
        raise LmforgetError(f"replay scores hold NaN (first at pool position {bad}); "
                            "drop undefined examples from the pool first")


def select_random(n_candidates: int, n: int, seed: int) -> np.ndarray:
    """`n` distinct positions, uniformly at random."""
    _check(None, n, n_candidates)
    return np.random.default_rng([seed, 11]).choice(n_candidates, size=n, replace=False)


def select_softmax(scores: np.ndarray, n: int, temperature: float, seed: int) -> np.ndarray:
    """Sample `n` positions without replacement with probabilities softmax(scores / temperature)."""
    scores = np.asarray(scores, dtype=np.float64)
    _check(scores, n, len(scores))
    if not temperature > 0:
        raise LmforgetError(f"softmax temperature must be > 0 (got {temperature}); use strategy 'top' for T -> 0")
    gumbel = np.random.default_rng([seed, 12]).gumbel(size=len(scores))
    logits = (scores - scores.max(initial=0.0)) / temperature if np.isfinite(temperature) else 0.0 * scores
    keys = logits + gumbel
    return np.argsort(-keys, kind="stable")[:n]


def select_top(scores: np.ndarray, n: int) -> np.ndarray:
    """The `n` highest-scoring positions (ties broken by position)."""
    scores = np.asarray(scores, dtype=np.float64)
    _check(scores, n, len(scores))
    return np.argsort(-scores, kind="stable")[:n]


def select_mir(scores: np.ndarray, n: int, group: int, seed: int) -> np.ndarray:
    """Best-of-`group`: the most forgotten example of each of `n` disjoint random groups."""
    scores = np.asarray(scores, dtype=np.float64)
    _check(scores, n, len(scores))
    if group < 1:
        raise LmforgetError(f"MIR group size must be >= 1 (got {group})")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    g = min(group, len(scores) // n)
    groups = np.random.default_rng([seed, 13]).permutation(len(scores))[: n * g].reshape(n, g)
    return groups[np.arange(n), np.argmax(scores[groups], axis=1)]


def select(strategy: str, scores: np.ndarray | None, n: int, *, seed: int, n_candidates: int | None = None,
           temperature: float = 0.1, group: int = 30) -> np.ndarray:
    """Dispatch by strategy name; `scores` may be None for ``random`` (give `n_candidates`)."""
    if strategy == "random":
        size = n_candidates if scores is None else len(scores)
        if size is None:
            raise LmforgetError("random selection needs the pool size")
        return select_random(size, n, seed)
    if strategy not in STRATEGIES:
        raise LmforgetError(f"unknown selection strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if scores is None:
        raise LmforgetError(f"selection strategy {strategy!r} needs scores")
    if strategy == "softmax":
        return select_softmax(scores, n, temperature, seed)
    if strategy == "top":
        return select_top(scores, n)
    return select_mir(scores, n, group, seed)
