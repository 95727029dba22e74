"""Synthetic forgetting matrices with the structure the paper reports, for tests and benchmarks.

Z = strength_i * vulnerability_j  (rank-1, about half the variance)
  + a few sparse components (a task family hitting a subset of examples)
  + small per-task offsets + heavy-tailed (Student-t, 3 d.o.f.) noise.
"""

from __future__ import annotations

import numpy as np

from lmforget.matrix import ForgettingMatrix


def synthetic_matrix(m: int = 66, n: int = 2000, seed: int = 0, n_sparse: int = 4,
                     noise: float = 0.03, groups: tuple[tuple[str, int], ...] | None = None) -> ForgettingMatrix:
    """A float32 [m, n] logppl matrix; `groups` = ((name, rows), ...) summing to m (default one 'flan')."""
    rng = np.random.default_rng(seed)
    strength = rng.lognormal(0.0, 0.5, size=m)
    vulnerability = rng.gamma(2.0, 0.03, size=n)
    Z = np.outer(strength, vulnerability)
    for _ in range(n_sparse):
        task_load = rng.normal(0.0, 1.0, size=m) * (rng.random(m) < 0.5)
        ex = np.zeros(n)
        hit = rng.random(n) < 0.1
        ex[hit] = rng.gamma(2.0, 0.03, size=int(hit.sum()))
        Z += np.outer(task_load, ex)
    Z += rng.normal(0.0, 0.01, size=(m, 1))
    Z += noise * rng.standard_t(3, size=(m, n))
    groups = groups or (("flan", m),)
    if sum(c for _, c in groups) != m:
        raise ValueError("group sizes must add up to m")
    task_groups = [g for g, c in groups for _ in range(c)]
    tasks = [f"{g}_task{i:03d}" for i, g in enumerate(task_groups)]
    return ForgettingMatrix(Z=Z.astype(np.float32), tasks=tasks, task_groups=task_groups,
                            examples=[f"ex{j}" for j in range(n)], example_sources=["synthetic"] * n,
                            kind="logppl", meta={"synthetic": {"seed": seed, "n_sparse": n_sparse, "noise": noise}})
