"""Time `lmforget analyze` (load + every number + figures + report) on a paper-sized matrix.

Prints the time beside numpy's full thin SVD (np.linalg.svd, full_matrices=False) of the same
matrix, measured in the same run, and their ratio. The acceptance target is analyze <= 30 s on
2 CPU cores for 85 x 141,816 float32 (OLMo-7B's Dolma matrix size).

    python benchmarks/bench_analyze.py [--tasks 85] [--examples 141816] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from lmforget.analysis import analyze_file
from lmforget.matrix import ForgettingMatrix


def synthetic(m: int, n: int, seed: int) -> ForgettingMatrix:
    """Low-rank 'task strength x example vulnerability' plus a few components and noise."""
    rng = np.random.default_rng(seed)
    Z = 0.1 * np.abs(rng.standard_normal((m, 1))) * np.abs(rng.standard_normal((1, n)))
    Z += 0.03 * rng.standard_normal((m, 4)) @ rng.standard_normal((4, n))
    Z += 0.05 * rng.standard_normal((m, n))
    groups = np.array(["flan"] * (m * 66 // 85) + ["tulu"] * (m * 11 // 85)
                      + ["dolly"] * (m - m * 66 // 85 - m * 11 // 85))
    sources = rng.choice(["common-crawl", "c4", "reddit", "pes2o", "stack", "books", "wiki"], n)
    return ForgettingMatrix(Z=Z.astype(np.float32), tasks=[f"task{i:03d}" for i in range(m)], task_groups=groups,
                            examples=[f"doc{j}" for j in range(n)], example_sources=sources, kind="logppl",
                            meta={"benchmark": "synthetic"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=85)
    ap.add_argument("--examples", type=int, default=141_816)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    matrix = synthetic(args.tasks, args.examples, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Z.npz"
        matrix.save(path)
        t0 = time.perf_counter()
        result = analyze_file(path, Path(tmp) / "out", ranks=10)
        t_analyze = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, s, _ = np.linalg.svd(matrix.Z, full_matrices=False)
    t_svd = time.perf_counter() - t0
    s_ours = np.asarray(result["singular_values"])
    err = float(np.abs(s_ours - s.astype(np.float64)).max() / s[0])
    print(f"matrix {args.tasks} x {args.examples:,} float32, cpus={os.cpu_count()}")
    print(f"lmforget analyze (load + numbers + figures + report): {t_analyze:7.2f} s "
          f"(numbers alone {result['timing']['analysis_s']:.2f} s)")
    print(f"numpy full SVD (np.linalg.svd, full_matrices=False):  {t_svd:7.2f} s")
    print(f"ratio analyze / numpy SVD: {t_analyze / t_svd:.2f}x; max |sigma diff| / sigma_1 = {err:.1e}")
    print(f"R^2 by rank 1..5: {', '.join(f'{v:.3f}' for v in result['r2_by_rank'][:5])}")


if __name__ == "__main__":
    main()
