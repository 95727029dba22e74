"""A replay study's results: the finished cells read back, aggregated with paired tests, written as
results.json, report.md and the figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lmforget.atomic import finite, read_json, write_json
from lmforget.errors import LmforgetError
from lmforget.replay.study_setup import Study
from lmforget.workdir import cell_file

# per-example and per-step lists of a cell record: its own file keeps them (results/<task>/<method>.json);
# results.json keeps each cell's numbers, so that it stays a summary (study 2's 192 cells: 2.3 MB -> 0.3 MB)
CELL_DETAIL = ("replay", "replay_trained", "initial_replay", "revealed", "learning_rates")


def cell_summary(record: dict) -> dict:
    """A cell record without its per-example and per-step lists (`CELL_DETAIL`)."""
    return {k: v for k, v in record.items() if k not in CELL_DETAIL}


def load_cells(study: Study) -> tuple[list[str], list[str], np.ndarray, dict]:
    """The tasks x methods table of held-out mean increases (complete tasks only) and every cell record."""
    names = [m.name for m in study.methods]
    records: dict = {}
    for t in study.cfg.test_tasks:
        for m in study.methods:
            p = study.cell_path(t, m, ".json")
            if p.is_file():
                records[(t, m.name)] = read_json(p, "cell record")
    tasks = [t for t in study.cfg.test_tasks if all((t, n) in records for n in names)]
    F = np.array([[records[(t, n)]["heldout_mean_increase"] for n in names] for t in tasks], dtype=np.float64)
    return tasks, names, F.reshape(len(tasks), len(names)), records


def _by_run_quartile(study: Study, tasks: list[str], names: list[str]) -> dict:
    """Each method's held-out increase within quartiles of what the previous run forgot (per task)."""
    from lmforget.replay.stats import by_reference_quantile

    ids = [study.upstream.examples[int(c)].id for c in study.split.heldout]
    reference = np.full((len(tasks), len(ids)), np.nan)
    values = np.full((len(tasks), len(names), len(ids)), np.nan)
    for i, t in enumerate(tasks):
        reference[i] = study.matrix.Z[study.matrix.rows([t])[0]][study.split.heldout]
        for j, n in enumerate(names):
            cell = pd.read_parquet(cell_file(study.out, t, n, ".parquet"), columns=["id", "increase"])
            values[i, j] = cell.set_index("id")["increase"].reindex(ids).to_numpy(np.float64)
    return by_reference_quantile(reference, values, names)


def _task_gain_results(tasks: list[str], names: list[str], records: dict, forgetting: dict) -> dict:
    """Task gain per method (answer NLL; exact match where measured) with paired tests, and the Pareto
    front of held-out forgetting against task gain. Empty for a study whose cells did not measure it."""
    from lmforget.replay.stats import pareto_front, summarize_gain

    out: dict = {}
    for key, metric in (("task_gain", "task_gain"), ("task_em_gain", "task_em_gain")):
        have = [t for t in tasks if all(records[(t, n)].get(metric) is not None for n in names)]
        if not have:
            continue
        G = np.array([[records[(t, n)][metric] for n in names] for t in have], dtype=np.float64)
        out[key] = summarize_gain(G, names, have)
    if "task_gain" in out:
        gain = out["task_gain"]
        mean_f = {n: float(np.mean([forgetting[n]["per_task"][t] for t in gain["tasks"]])) for n in names}
        out["pareto"] = {"tasks": gain["tasks"], "forgetting": mean_f,
                         "gain": {n: gain["methods"][n]["mean_gain"] for n in names},
                         "front": pareto_front(mean_f, {n: gain["methods"][n]["mean_gain"] for n in names})}
    return out


def write_results(study: Study) -> dict:
    from lmforget.atomic import write_text
    from lmforget.replay.plots import plot_study
    from lmforget.replay.report import render_report
    from lmforget.replay.stats import summarize

    tasks, names, F, records = load_cells(study)
    if not tasks:
        raise LmforgetError(f"{study.out}: no task has results for every method yet")
    summary = summarize(F, names, tasks)
    for n in names:  # diagnostics: was targeting aimed at examples the task really forgets? how much loss was replay?
        for key in ("replay_run_forgetting", "prediction_pearson", "replay_loss_share", "replay_token_share",
                    "replay_example_share"):
            vals = [records[(t, n)].get(key) for t in tasks]
            vals = [v for v in vals if v is not None]
            summary["methods"][n][f"mean_{key}"] = float(np.mean(vals)) if vals else None
    run_rows = [records[(t, names[0])].get("run_heldout_mean_increase") for t in tasks]
    run_rows = [v for v in run_rows if v is not None]
    results = {
        # the previous run's own rows on the held-out set: what the tasks forgot there, next to `none` here
        "run_heldout_mean_increase": float(np.mean(run_rows)) if run_rows else None,
        "recipe": study.recipe.name, "run": str(study.run.path), "model": study.recipe.model.name,
        "settings": study.recipe.replay.science(),
        "n_test_tasks": len(study.cfg.test_tasks), "complete": len(tasks) == len(study.cfg.test_tasks),
        "n_upstream": len(study.upstream), "n_heldout": int(len(study.split.heldout)),
        "n_pool": int(len(study.split.pool)), **summary,
        "by_run_quartile": _by_run_quartile(study, tasks, names),
        "cells": [cell_summary(records[(t, n)]) for t in tasks for n in names],
    }
    results.update(_task_gain_results(tasks, names, records, results["methods"]))
    results = finite(results)
    write_json(study.out / "results.json", results)
    plot_study(results, study.out / "figure.png")
    if results.get("pareto"):
        from lmforget.replay.plots import plot_pareto

        plot_pareto(results, study.out / "pareto.png")
    write_text(study.out / "report.md", render_report(results))
    return results

