"""Prediction part of the study: matrix completion for unseen tasks, next to the replicate noise floor.

    python studies/common/predict.py --runs studies/smollm2-ni/runs --out studies/smollm2-ni/results/prediction

docs/protocol.md section 5 on the study's matrix: colmean, additive, knn, mf, lowrank; k revealed entries
per test row (without replacement), 10 seeds, mean +- std of the pooled RMSE of the unrevealed entries:
  - a fixed 10-task split (seeded random choice of 10 test tasks), k = 30, and RMSE against k in (10, 30, 100);
  - 5-fold cross-validation over tasks (seeded folds), k = 30.
The noise floor: tasks fine-tuned twice (matrix run and noise run, another data-order seed) give the
replicate RMSE between the two measurements of the same entries. One measurement has per-entry noise
replicate / sqrt(2): no predictor of a single run's entries can beat that on average. Both are printed
next to every prediction RMSE.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lmforget.atomic import atomic_path, write_json, write_text
from lmforget.matrix import ForgettingMatrix
from lmforget.predict.protocol import Split, evaluate
from lmforget.runs import Run

METHODS = ["colmean", "additive", "knn", "mf", "lowrank"]


def replicate_rmse(matrix: ForgettingMatrix, noise: ForgettingMatrix) -> dict:
    """RMSE between the two runs' rows of the tasks both measured (same columns)."""
    if list(noise.examples) != list(matrix.examples):
        raise SystemExit("the noise run has other upstream examples than the matrix run")
    common = [t for t in noise.tasks if t in set(matrix.tasks)]
    if not common:
        raise SystemExit("the noise run shares no finished task with the matrix run")
    a = matrix.Z[matrix.rows(common)].astype(np.float64)
    b = noise.Z[noise.rows(common)].astype(np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    rmse = float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))
    per_task = {t: float(np.sqrt(np.nanmean((a[i] - b[i]) ** 2))) for i, t in enumerate(common)}
    return {"tasks": common, "replicate_rmse": rmse, "single_run_noise": rmse / np.sqrt(2),
            "pearson": float(np.corrcoef(a[ok], b[ok])[0, 1]), "per_task": per_task}


def folds(tasks: list[str], k: int, seed: int) -> list[list[str]]:
    order = np.random.default_rng(seed).permutation(len(tasks))
    return [[tasks[i] for i in sorted(part)] for part in np.array_split(order, k)]


def run(matrix: ForgettingMatrix, k_list: list[int], n_test: int, n_folds: int, seeds: int) -> dict:
    tasks = [str(t) for t in matrix.tasks]
    test = sorted(np.random.default_rng(0).choice(len(tasks), n_test, replace=False))
    fixed = Split(train=[t for i, t in enumerate(tasks) if i not in set(test)], test=[tasks[i] for i in test],
                  spec=f"fixed {n_test}-task split (seed 0)")
    out: dict = {"fixed_split": fixed.to_dict(), "fixed": {}, "cv": {}}
    for k in k_list:
        ev = evaluate(matrix, fixed, METHODS, observed=k, seeds=seeds)
        out["fixed"][str(k)] = {m: {"rmse_mean": r["rmse_mean"], "rmse_std": r["rmse_std"],
                                    "spearman_mean": r["spearman_mean"]} for m, r in ev.methods.items()}
    per: dict[str, list[float]] = {m: [] for m in METHODS}
    out["cv_folds"] = folds(tasks, n_folds, seed=0)
    for part in out["cv_folds"]:
        split = Split(train=[t for t in tasks if t not in set(part)], test=part, spec="fold")
        ev = evaluate(matrix, split, METHODS, observed=30, seeds=seeds)
        for m, r in ev.methods.items():
            per[m] += [p["rmse"] for p in r["per_seed"]]
    out["cv"] = {m: {"rmse_mean": float(np.mean(v)), "rmse_std": float(np.std(v)), "n": len(v)}
                 for m, v in per.items()}
    return out


def render(result: dict, level: int = 1) -> str:
    """Markdown of a prediction.json result; `level` = the heading level of its title."""
    noise = result.get("noise")
    floor = (f"{noise['replicate_rmse']:.4f} (single run {noise['single_run_noise']:.4f})" if noise
             else "n/a (noise run not finished)")
    m, n = result["shape"]
    h = "#" * level
    lines = [f"{h} Predicting forgetting of unseen tasks ({m} tasks x {n} examples)", "",
             f"RMSE x 1 (nats/token) of the unrevealed entries, mean +- std over {result['seeds']} reveal seeds. "
             f"Replicate RMSE (noise floor) on {len(noise['tasks']) if noise else 0} tasks fine-tuned twice: "
             f"{floor}.", ""]
    ks = list(result["fixed"])
    lines += [f"{h}# Fixed 10-task split", "",
              "| method | " + " | ".join(f"k = {k}" for k in ks) + " | replicate RMSE |",
              "|---|" + "---:|" * (len(ks) + 1)]
    for m in METHODS:
        cells = [f"{result['fixed'][k][m]['rmse_mean']:.4f} +- {result['fixed'][k][m]['rmse_std']:.4f}" for k in ks]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {floor} |")
    lines += ["", f"{h}# 5-fold over tasks, k = 30", "", "| method | RMSE | replicate RMSE |", "|---|---:|---:|"]
    for m in METHODS:
        r = result["cv"][m]
        lines.append(f"| {m} | {r['rmse_mean']:.4f} +- {r['rmse_std']:.4f} | {floor} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """RMSE against k on the fixed split, one line per method (whiskers: std over seeds), noise floor dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ks = [int(k) for k in result["fixed"]]
    fig = Figure(figsize=(6.4, 4.2), dpi=130)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for m in METHODS:
        mean = [result["fixed"][str(k)][m]["rmse_mean"] for k in ks]
        std = [result["fixed"][str(k)][m]["rmse_std"] for k in ks]
        style = {"marker": "x", "ls": ":"} if m == "knn" else {"marker": "o"}  # knn can sit on additive
        ax.errorbar(ks, mean, yerr=std, capsize=3, label=m, **style)
    noise = result.get("noise")
    if noise:
        ax.axhline(noise["single_run_noise"], color="grey", ls="--", lw=1, label="per-entry noise")
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("revealed entries per test task (k)")
    ax.set_ylabel("RMSE of unrevealed entries (nats/token)")
    m, n = result["shape"]
    ax.set_title(f"Predicting unseen tasks' forgetting ({m} x {n}, fixed 10-task split)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, help="the study's run folder (matrix/, noise/)")
    ap.add_argument("--matrix", type=Path, help="use this .npz instead of runs/matrix")
    ap.add_argument("--noise", type=Path, help="use this .npz instead of runs/noise")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--partial", action="store_true", help="use the finished tasks of unfinished runs")
    args = ap.parse_args()
    if args.matrix is not None:
        matrix = ForgettingMatrix.load(args.matrix)
    else:
        matrix = Run.open(args.runs / "matrix").matrix(require_all=not args.partial)
    noise = None
    if args.noise is not None:
        noise = ForgettingMatrix.load(args.noise)
    elif args.runs is not None and (args.runs / "noise" / "manifest.json").is_file():
        noise_run = args.runs / "noise"  # finished when its matrix.npz is written (as analyze.py reads it)
        if (noise_run / "matrix.npz").is_file() or args.partial:
            noise = Run.open(noise_run).matrix(require_all=not args.partial)
        else:
            print(f"{noise_run} has not finished: no noise floor this time (--partial uses its finished tasks)")
    result = {"shape": list(matrix.Z.shape), "seeds": args.seeds, "methods": METHODS,
              **run(matrix, [10, 30, 100], n_test=10, n_folds=5, seeds=args.seeds)}
    result["noise"] = replicate_rmse(matrix, noise) if noise is not None else None
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "prediction.json", result)
    md = render(result)
    write_text(args.out / "prediction.md", md)
    plot(result, args.out / "rmse_vs_k.png")
    print(md)


if __name__ == "__main__":
    main()
