"""Assemble the study's results: results/results.json and results/report.md from every finished part.

    python studies/smollm2-ni/report.py --runs studies/smollm2-ni/runs --results studies/smollm2-ni/results

Reads what the parts wrote (analyze.py: results/r2_bootstrap.json, results/replay-run/r2_bootstrap.json;
predict.py: results/prediction/prediction.json; sweep.py: runs/sweep/summary.json; the replay study:
runs/replay/results.json) and says which parts have not run yet. Recomputes nothing, so it is cheap to run
after each part.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from analyze import render as render_r2  # this folder's analyze.py (the script's folder is on sys.path)

from lmforget.atomic import write_json, write_text

R2_ROWS = ["rank-1", "rank-2", "rank-3", "rank-5", "rank-10", "additive", "example_only", "task_only"]


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _f(v, fmt: str = "+.4f") -> str:
    return "n/a" if v is None else format(v, fmt)


def matrix_section(title: str, r2: dict | None) -> list[str]:
    if r2 is None:
        return [f"## {title}", "", "Not run yet.", ""]
    m, n = r2["shape"]
    return [f"## {title}", "", f"{m} tasks x {n} upstream examples.", "",
            *render_r2(r2, [k for k in R2_ROWS if k in r2["r2"]]), ""]


def prediction_section(pred: dict | None) -> list[str]:
    if pred is None:
        return ["## Predicting forgetting of unseen tasks", "", "Not run yet.", ""]
    noise = pred.get("noise")
    floor = (f"replicate RMSE {noise['replicate_rmse']:.4f}, i.e. per-entry noise {noise['single_run_noise']:.4f}: "
             "no predictor of one run's entries beats that on average" if noise else "no noise run")
    m, n = pred["shape"]
    ks = list(pred["fixed"])
    lines = ["## Predicting forgetting of unseen tasks", "",
             f"{m} x {n} matrix; RMSE of the unrevealed entries, mean +- std over {pred['seeds']} reveal seeds; "
             f"noise floor: {floor}.", "",
             "| method | " + " | ".join(f"fixed split, k = {k}" for k in ks) + " | 5-fold, k = 30 |",
             "|---|" + "---:|" * (len(ks) + 1)]
    for meth in pred["methods"]:
        cells = [f"{pred['fixed'][k][meth]['rmse_mean']:.4f} +- {pred['fixed'][k][meth]['rmse_std']:.4f}" for k in ks]
        cv = pred["cv"][meth]
        lines.append(f"| {meth} | " + " | ".join(cells) + f" | {cv['rmse_mean']:.4f} +- {cv['rmse_std']:.4f} |")
    return lines + [""]


def sweep_section(sweep: dict | None) -> list[str]:
    if sweep is None:
        return ["## Replay regime sweep", "", "Not run yet.", ""]
    lines = ["## Replay regime sweep", "",
             "Held-out increase after fine-tuning with no replay and with random replay of self-samples; "
             "random - none paired over the same held-out examples (mean +- s.e.m.).", "",
             "| task | task examples | replayed | none | random | random - none | restores |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in sweep["rows"]:
        diff = (f"{r['random_minus_none']:+.4f} +- {r['random_minus_none_sem']:.4f}"
                if r.get("random_minus_none") is not None else "n/a")
        lines.append(f"| {r['task']} | {r['n_task']} | {r['n_rep']} | {_f(r.get('none'))} | {_f(r.get('random'))} | "
                     f"{diff} | {'yes' if r.get('restores') else 'no'} |")
    return lines + [""]


def replay_section(replay: dict | None, cells_done: int, cells_total: int | None) -> list[str]:
    if replay is None:
        progress = f" ({cells_done} of {cells_total} cells finished)" if cells_total else ""
        return ["## Replay", "", f"Not finished yet{progress}.", ""]
    methods = replay["methods"]
    lines = ["## Replay", "",
             f"{len(replay['tasks'])} test tasks; {replay['n_heldout']} held-out upstream examples never replayed; "
             f"rate {replay['settings']['rate']:.4g}, loss weighting `{replay['settings'].get('loss_weighting')}`. "
             "Mean held-out increase over tasks; method - random: paired over tasks (t-test, Wilcoxon, "
             "95% bootstrap CI).", "",
             "| method | mean increase | reduction vs none | method - random [95% CI] | t-test p | Wilcoxon p | "
             "replay share of loss | below 0? |", "|---|---:|---:|---|---:|---:|---:|---|"]
    for name, m in methods.items():
        vr = m.get("vs_random") or {}
        low, high = vr.get("ci") or [None, None]
        diff = (f"{vr['mean_difference']:+.4f} [{_f(low)}, {_f(high)}]" if vr.get("mean_difference") is not None
                else "")
        share, vs_none = m.get("mean_replay_loss_share"), m.get("reduction_vs_none")
        below = "yes (adaptation)" if (m.get("vs_zero") or {}).get("adaptation") else "no"
        cells = [f"{m['mean_increase']:+.4f}", "" if vs_none is None else f"{100 * vs_none:+.1f}%", diff,
                 _f(vr.get("t_p"), ".3g") if vr else "", _f(vr.get("wilcoxon_p"), ".3g") if vr else "",
                 "" if share is None else f"{100 * share:.0f}%", below]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--results", type=Path, required=True)
    args = ap.parse_args()
    parts = {
        "matrix": _read(args.results / "r2_bootstrap.json"),
        "replay_run_matrix": _read(args.results / "replay-run" / "r2_bootstrap.json"),
        "prediction": _read(args.results / "prediction" / "prediction.json"),
        "sweep": _read(args.runs / "sweep" / "summary.json"),
        "replay": _read(args.runs / "replay" / "results.json"),
    }
    for name in ("sweep", "replay"):  # their per-cell records stay in runs/
        if parts[name] is not None:
            parts[name] = {k: v for k, v in parts[name].items() if k != "cells"}
    cells = sorted((args.runs / "replay" / "results").glob("*/*.json"))  # one per finished task x method cell
    total = None
    recipe = Path(__file__).resolve().parent / "replay.yaml"  # the study's replay recipe: how many cells
    if recipe.is_file():
        import yaml

        cfg = yaml.safe_load(recipe.read_text(encoding="utf-8"))["replay"]
        total = len(cfg["test_tasks"]) * len(cfg["methods"])
    lines = ["# SmolLM2-135M-Instruct x Natural-Instructions: results", "",
             "Assembled by `report.py` from the parts' outputs; see README.md for the settings and commands.", ""]
    lines += matrix_section("Forgetting matrix (48 training examples per task)", parts["matrix"])
    lines += prediction_section(parts["prediction"])
    lines += sweep_section(parts["sweep"])
    lines += matrix_section("Second matrix: the replay run (192 training examples per task)",
                            parts["replay_run_matrix"])
    lines += replay_section(parts["replay"], len(cells), total)
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "results.json", {k: v for k, v in parts.items() if v is not None})
    write_text(args.results / "report.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
