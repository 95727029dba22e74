"""Assemble the study's results: results/results.json and results/report.md from every finished part.

    python studies/smollm2-ni/report.py --runs studies/smollm2-ni/runs --results studies/smollm2-ni/results

Reads what the parts wrote (analyze.py: results/r2_bootstrap.json, results/replay-run/r2_bootstrap.json;
predict.py: results/prediction/prediction.json; sweep.py: runs/sweep/summary.json and .md; the replay study:
runs/replay/results.json and report.md), renders them with the parts' own renderers, and says which parts have
not run yet. Recomputes nothing, so it is cheap to run
after each part.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))  # the analysis scripts both studies use
from analyze import render as render_r2  # noqa: E402
from predict import render as render_prediction  # noqa: E402
from report_parts import included, read_part  # noqa: E402

from lmforget.atomic import write_json, write_text

R2_ROWS = ["rank-1", "rank-2", "rank-3", "rank-5", "rank-10", "additive", "example_only", "task_only"]


def matrix_section(title: str, r2: dict | None) -> list[str]:
    if r2 is None:
        return [f"## {title}", "", "Not run yet.", ""]
    m, n = r2["shape"]
    return [f"## {title}", "", f"{m} tasks x {n} upstream examples.", "",
            *render_r2(r2, [k for k in R2_ROWS if k in r2["r2"]]), ""]


def prediction_section(pred: dict | None) -> list[str]:
    if pred is None:
        return ["## Predicting forgetting of unseen tasks", "", "Not run yet.", ""]
    return render_prediction(pred, level=2).splitlines() + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--results", type=Path, required=True)
    args = ap.parse_args()
    parts = {
        "matrix": read_part(args.results / "r2_bootstrap.json"),
        "replay_run_matrix": read_part(args.results / "replay-run" / "r2_bootstrap.json"),
        "prediction": read_part(args.results / "prediction" / "prediction.json"),
        "sweep": read_part(args.runs / "sweep" / "summary.json"),
        "replay": read_part(args.runs / "replay" / "results.json"),
    }
    for name in ("sweep", "replay"):  # their per-cell records stay in runs/
        if parts[name] is not None:
            parts[name] = {k: v for k, v in parts[name].items() if k != "cells"}
    cells = [p for p in (args.runs / "replay" / "results").glob("*/*.json")  # one per finished task x method cell
             if not p.name.endswith(".error.json")]
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
    lines += included("Replay regime sweep", args.runs / "sweep" / "summary.md", "Not run yet.")
    lines += matrix_section("Second matrix: the replay run (192 training examples per task)",
                            parts["replay_run_matrix"])
    progress = f" ({len(cells)} of {total} cells finished)" if total else ""
    lines += included("Replay study", args.runs / "replay" / "report.md", f"Not finished yet{progress}.")
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "results.json", {k: v for k, v in parts.items() if v is not None})
    write_text(args.results / "report.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
