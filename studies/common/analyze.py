"""Matrix part of the study: save the matrices, analyse them, R^2 by rank with bootstrap CIs over columns.

    python studies/common/analyze.py --runs studies/smollm2-ni/runs --out studies/smollm2-ni/results
    python studies/common/analyze.py --runs studies/smollm2-ni/runs --run replay-run \
        --compare matrix --out studies/smollm2-ni/results/replay-run            # the second matrix
    python studies/common/analyze.py --matrix Z.npz --out /tmp/x          # any matrix file

Writes OUT/matrix.npz (and OUT/noise.npz when the noise run is finished), OUT/analysis/ (lmforget
analyze: report.md, figures) and OUT/r2_bootstrap.json + .md: R^2 of the rank-1..10 truncated SVD and of
the simple models (additive, task-only, example-only), each with a 95% percentile bootstrap CI over
resampled columns (upstream examples), and the bootstrap's bias (its mean - the point estimate).

With the noise run (tasks fine-tuned a second time with another seed) two more answers to "is the low-rank
structure signal or noise?":
  - the noise ceiling 1 - s^2 / var(Z), s^2 = per-entry noise variance (half the mean squared replicate
    difference): the R^2 the noise-free matrix would reach; a model above it also fits noise;
  - replicate RMSE of each model's reconstruction of the replicated rows: the rank-k truncation (or the
    additive fit) of the matrix run, compared with the *other* run's measurement of the same entries. The raw
    row scores the replicate RMSE (sqrt(2) s); a reconstruction that keeps signal and drops noise scores
    lower, down to s for the noise-free matrix.

With --compare RUN (the replay run against the matrix run: the same tasks and examples, four times the
training data) how far the two runs agree: the ratio of mean forgetting, the correlation of entries, of each
task's two rows, of task strength (row means) and of example vulnerability (column means).
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
                "ci_high": float(np.quantile(draws[k], 0.975)), "boot_bias": float(np.mean(draws[k]) - point[k])}
            for k in point}


def against_replicate(matrix: ForgettingMatrix, noise: ForgettingMatrix, ranks: int) -> dict:
    """Noise ceiling of R^2, and each model's RMSE against the replicate run on the replicated rows."""
    from predict import replicate_rmse  # predict.py next to this script: checks the runs match, finds the shared tasks

    common = replicate_rmse(matrix, noise)["tasks"]
    cols = ~np.isnan(matrix.Z).any(axis=0) & ~np.isnan(noise.Z).any(axis=0)
    Z = matrix.Z[:, cols].astype(np.float64)
    rows = matrix.rows(common)
    other = noise.Z[noise.rows(common)][:, cols].astype(np.float64)
    var_noise = float(np.mean((Z[rows] - other) ** 2) / 2)

    def rmse(fit: np.ndarray) -> float:
        return float(np.sqrt(np.mean((fit[rows] - other) ** 2)))

    spec = spectrum(Z)
    U = spec.U
    # largest singular value of an M x N matrix of i.i.d. noise with that s.d. (Marchenko-Pastur edge)
    edge = float(np.sqrt(var_noise) * (np.sqrt(Z.shape[0]) + np.sqrt(Z.shape[1])))
    fits = {"raw": rmse(Z)}
    fits.update({f"rank-{k}": rmse(U[:, :k] @ (U[:, :k].T @ Z)) for k in range(1, min(ranks, Z.shape[0]) + 1)})
    r, c, mu = Z.mean(axis=1), Z.mean(axis=0), Z.mean()
    fits["additive"] = rmse(r[:, None] + c[None, :] - mu)
    return {"tasks": common, "noise_variance": var_noise, "noise_sd": float(np.sqrt(var_noise)),
            "var_Z": float(Z.var()), "r2_ceiling": 1.0 - var_noise / float(Z.var()), "replicate_rmse": fits,
            "noise_edge": edge, "n_above_noise_edge": int((spec.singular_values > edge).sum())}


def compare_runs(matrix: ForgettingMatrix, other: ForgettingMatrix, name: str) -> dict:
    """How far another run of the same tasks and examples (e.g. other training lengths) agrees with this one:
    entries, each task's row, task strength (row means) and example vulnerability (column means)."""
    if list(other.examples) != list(matrix.examples):
        raise SystemExit(f"the {name} run has other upstream examples than this run")
    common = [t for t in matrix.tasks if t in set(other.tasks)]
    if len(common) < 2:
        raise SystemExit(f"the {name} run shares fewer than 2 finished tasks with this run")
    a = matrix.Z[matrix.rows(common)].astype(np.float64)
    b = other.Z[other.rows(common)].astype(np.float64)
    cols = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
    a, b = a[:, cols], b[:, cols]
    r = np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)])
    return {"other": name, "tasks": common, "n_columns": int(cols.sum()), "mean_ratio": float(a.mean() / b.mean()),
            "pearson": float(np.corrcoef(a.ravel(), b.ravel())[0, 1]),
            "row_pearson": {"median": float(np.median(r)), "min": float(r.min()), "max": float(r.max()),
                            "per_task": dict(zip(common, r.tolist()))},
            "row_mean_pearson": float(np.corrcoef(a.mean(axis=1), b.mean(axis=1))[0, 1]),
            "column_mean_pearson": float(np.corrcoef(a.mean(axis=0), b.mean(axis=0))[0, 1])}


def render(result: dict, models: list[str] | None = None) -> list[str]:
    """Markdown of an r2_bootstrap.json result: the summary, the noise analysis, one table row per model."""
    mean, m = result["mean_forgetting"], result["shape"][0]
    lines = [f"Mean forgetting {mean:+.4f} nats/token (std {result['std']:.4f}); "
             f"{100 * result['share_positive']:.1f}% of entries > 0. 95% percentile bootstrap CIs over columns "
             f"({result['n_boot']} resamples); bias = bootstrap mean - R^2.", ""]
    noise = result.get("noise")
    if noise:
        lines += [f"Noise ceiling (R^2 of the noise-free matrix, from {len(noise['tasks'])} tasks fine-tuned "
                  f"twice): **{noise['r2_ceiling']:.3f}** (per-entry noise s.d. {noise['noise_sd']:.4f}). "
                  f"A model above it also fits noise. {noise['n_above_noise_edge']} of {m} singular values "
                  f"exceed {noise['noise_edge']:.3f}, the largest of a same-size matrix of i.i.d. noise "
                  "(Marchenko-Pastur edge). Replicate RMSE: each model's reconstruction of those "
                  f"tasks' rows against the other run's measurement (raw row {noise['replicate_rmse']['raw']:.4f}; "
                  f"the noise-free matrix would score {noise['noise_sd']:.4f}).", ""]
    other = result.get("compare")
    if other:
        rows = other["row_pearson"]
        lines += [f"Against the {other['other']} run ({len(other['tasks'])} shared tasks, {other['n_columns']} "
                  f"examples): mean forgetting {other['mean_ratio']:.2f}x the other run's; entries correlate "
                  f"r = {other['pearson']:.3f}; each task's row with its other-run row: median r = "
                  f"{rows['median']:.3f} (min {rows['min']:.3f}, max {rows['max']:.3f}); task strength (row means) "
                  f"r = {other['row_mean_pearson']:.3f}; example vulnerability (column means) r = "
                  f"{other['column_mean_pearson']:.3f}.", ""]
    lines += ["| model | R^2 | 95% CI | bias | replicate RMSE |", "|---|---:|---|---:|---:|"]
    for k in models or list(result["r2"]):
        v = result["r2"][k]
        fit = noise["replicate_rmse"].get(k) if noise else None
        lines.append(f"| {k} | {v['r2']:.3f} | [{v['ci_low']:.3f}, {v['ci_high']:.3f}] | {v['boot_bias']:+.3f} | "
                     + ("|" if fit is None else f"{fit:.4f} |"))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, help="the study's run folder (matrix/, noise/)")
    ap.add_argument("--run", default="matrix", help="which run under --runs (the noise run replicates 'matrix')")
    ap.add_argument("--matrix", type=Path, help="analyse this .npz instead")
    ap.add_argument("--noise", type=Path, help="a replicate matrix (.npz) for the noise ceiling")
    ap.add_argument("--compare", help="another run under --runs (or a .npz) of the same examples to compare with")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ranks", type=int, default=10)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--partial", action="store_true", help="use the finished tasks of an unfinished run")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.matrix is not None:
        matrix = ForgettingMatrix.load(args.matrix)
    else:
        matrix = Run.open(args.runs / args.run).matrix(require_all=not args.partial)
        matrix.save(args.out / "matrix.npz")
        noise = args.runs / "noise"
        if args.run == "matrix" and (noise / "matrix.npz").is_file():
            ForgettingMatrix.load(noise / "matrix.npz").save(args.out / "noise.npz")
    noise_file = args.noise if args.noise is not None else args.out / "noise.npz"
    source = args.matrix if args.matrix is not None else args.out / "matrix.npz"
    analyze_file(source, args.out / "analysis", ranks=args.ranks)
    Z = matrix.complete()[0].Z.astype(np.float64)  # the entries `lmforget analyze` uses
    table = bootstrap(Z, min(args.ranks, Z.shape[0]), args.boot, seed=0)
    result = {"shape": list(Z.shape), "n_boot": args.boot, "mean_forgetting": float(Z.mean()),
              "std": float(Z.std()), "share_positive": float((Z > 0).mean()), "r2": table}
    if noise_file.is_file():
        result["noise"] = against_replicate(matrix, ForgettingMatrix.load(noise_file), args.ranks)
    if args.compare:
        if args.compare.endswith(".npz"):
            other, name = ForgettingMatrix.load(args.compare), Path(args.compare).stem
        elif args.runs is not None:
            other, name = Run.open(args.runs / args.compare).matrix(), args.compare
        else:
            raise SystemExit("--compare RUN needs --runs (or give a .npz)")
        result["compare"] = compare_runs(matrix, other, name)
    write_json(args.out / "r2_bootstrap.json", result)
    lines = [f"# R^2 of the forgetting matrix ({Z.shape[0]} tasks x {Z.shape[1]} upstream examples)", "",
             *render(result)]
    write_text(args.out / "r2_bootstrap.md", "\n".join(lines) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
