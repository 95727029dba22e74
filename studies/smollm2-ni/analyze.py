"""Matrix part of the study: save the matrices, analyse them, R^2 by rank with bootstrap CIs over columns.

    python studies/smollm2-ni/analyze.py --runs studies/smollm2-ni/runs --out studies/smollm2-ni/results
    python studies/smollm2-ni/analyze.py --matrix Z.npz --out /tmp/x          # any matrix file

Writes OUT/matrix.npz (and OUT/noise.npz when the noise run is finished), OUT/analysis/ (lmforget
analyze: report.md, figures) and OUT/r2_bootstrap.json + .md: R^2 of the rank-1..10 truncated SVD and of
the simple models (additive, task-only, example-only), each with a 95% percentile bootstrap CI over
resampled columns (upstream examples).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lmforget.analysis.lowrank import baseline_models, r2_by_rank, spectrum
from lmforget.analysis.report import analyze_file
from lmforget.atomic import write_json, write_text
from lmforget.matrix import ForgettingMatrix
from lmforget.runs import Run


def r2_table(Z: np.ndarray, ranks: int) -> dict[str, float]:
    out = {f"rank-{k}": v for k, v in enumerate(r2_by_rank(Z, spectrum(Z), ranks)["overall"], 1)}
    out.update(baseline_models(Z))
    return out


def bootstrap(Z: np.ndarray, ranks: int, n_boot: int, seed: int) -> dict[str, dict[str, float]]:
    point = r2_table(Z, ranks)
    rng = np.random.default_rng(seed)
    draws = {k: [] for k in point}
    for _ in range(n_boot):
        cols = rng.integers(0, Z.shape[1], Z.shape[1])
        for k, v in r2_table(Z[:, cols], ranks).items():
            draws[k].append(v)
    return {k: {"r2": point[k], "ci_low": float(np.quantile(draws[k], 0.025)),
                "ci_high": float(np.quantile(draws[k], 0.975))} for k in point}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, help="the study's run folder (matrix/, noise/)")
    ap.add_argument("--matrix", type=Path, help="analyse this .npz instead")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ranks", type=int, default=10)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--partial", action="store_true", help="use the finished tasks of an unfinished run")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.matrix is not None:
        matrix = ForgettingMatrix.load(args.matrix)
    else:
        matrix = Run.open(args.runs / "matrix").matrix(require_all=not args.partial)
        matrix.save(args.out / "matrix.npz")
        noise = args.runs / "noise"
        if (noise / "matrix.npz").is_file():
            ForgettingMatrix.load(noise / "matrix.npz").save(args.out / "noise.npz")
    source = args.matrix if args.matrix is not None else args.out / "matrix.npz"
    analyze_file(source, args.out / "analysis", ranks=args.ranks)
    Z = matrix.Z[:, ~np.isnan(matrix.Z).any(axis=0)].astype(np.float64)
    table = bootstrap(Z, min(args.ranks, Z.shape[0]), args.boot, seed=0)
    result = {"shape": list(Z.shape), "n_boot": args.boot, "mean_forgetting": float(Z.mean()),
              "share_positive": float((Z > 0).mean()), "r2": table}
    write_json(args.out / "r2_bootstrap.json", result)
    lines = [f"# R^2 of the forgetting matrix ({Z.shape[0]} tasks x {Z.shape[1]} upstream examples)", "",
             f"Mean forgetting {Z.mean():+.4f} nats/token; {100 * (Z > 0).mean():.1f}% of entries > 0. "
             f"95% percentile bootstrap CIs over columns ({args.boot} resamples).", "",
             "| model | R^2 | 95% CI |", "|---|---:|---|"]
    lines += [f"| {k} | {v['r2']:.3f} | [{v['ci_low']:.3f}, {v['ci_high']:.3f}] |" for k, v in table.items()]
    write_text(args.out / "r2_bootstrap.md", "\n".join(lines) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
