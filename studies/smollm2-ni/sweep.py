"""Replay regime sweep (issue 12): where does random replay of self-sampled data restore, not adapt?

    python studies/smollm2-ni/sweep.py --runs studies/smollm2-ni/runs --out studies/smollm2-ni/runs/sweep

At the base weights the replay gradient of self-sampled data is zero in expectation; after drift its
mean points back, but with a handful of samples its noise dominates (the pilot: 6 samples made the
held-out change worse). So the sweep varies the number of distinct replay examples, each seen about
once: n_task task examples and n_rep = floor(n_task x r) + 1 replay examples, one pass over both
(finetune.steps = n_task / batch, stretched by 1 + r, exactly the study's mixture rule), for several
n_task, learning rates and tasks. Each point fine-tunes `none` (task only) and `random` (task + replay);
random replay restores when its held-out change lies between 0 and none's. Upstream data, base scores
and the held-out set (never replayed) come from the matrix run. Every cell is written atomically and
skipped when re-run (resumable); summary.md / summary.json are rewritten after each cell.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lmforget.atomic import write_json, write_text
from lmforget.data import load_tasks
from lmforget.data.types import UpstreamSet
from lmforget.finetune import build_train_set, train
from lmforget.models import load_recipe_model
from lmforget.replay.heldout import split_heldout
from lmforget.replay.mixture import ReplayMixture, mixture_steps, n_replay
from lmforget.replay.online import MixtureTrainer
from lmforget.replay.selection import select_random
from lmforget.runs import Run, task_slug
from lmforget.scoring.upstream import score_upstream

DEFAULT_TASKS = ["qasc_answer_generation", "mctaco_answer_generation_event_duration"]


def cell_name(task: str, lr: float, n_task: int, arm: str) -> str:
    return f"{task_slug(task)}__lr{lr:g}__n{n_task}__{arm}"


def run_cell(run: Run, task_name: str, lr: float, n_task: int, rate: float, weighting: str, arm: str,
             heldout_size: int) -> dict:
    recipe = run.recipe
    source = next(iter(recipe.tasks.values()))  # the study has one task source
    spec = source.model_copy(update={"tasks": [task_name], "n_train": n_task, "n_eval": 0})
    task = load_tasks(spec)[0]
    batch = recipe.finetune.effective_batch
    ft = recipe.finetune.model_copy(update={"lr": lr, "steps": max(1, n_task // batch)})
    upstream = run.upstream()
    split = split_heldout(upstream.ids, heldout_size, seed=0)
    base = run.base_scores()["nll"].to_numpy(np.float64)
    start = time.perf_counter()
    model, tok = load_recipe_model(recipe)
    task_items = build_train_set(tok, task, ft)
    n_rep = n_replay(len(task_items), rate) if arm == "random" else 0
    steps = mixture_steps(len(task_items), n_rep, ft, rate if n_rep else None)
    picks = split.pool[select_random(len(split.pool), n_rep, seed=0)] if n_rep else split.pool[:0]
    mixture = ReplayMixture(task_items, [upstream.examples[int(c)] for c in picks], tok, ft.max_length,
                            split.heldout_ids)
    result = train(model, tok, mixture, ft, max_steps=steps, progress=False,
                   trainer_cls=MixtureTrainer.weighted(weighting))
    heldout = UpstreamSet([upstream.examples[int(c)] for c in split.heldout])
    after = score_upstream(result.model, tok, heldout, recipe.score, progress=False)
    increase = after["nll"].to_numpy(np.float64) - base[split.heldout]
    return {"task": task_name, "lr": lr, "n_task": len(task_items), "rate": rate, "arm": arm, "n_rep": n_rep,
            "steps": steps, "loss_weighting": weighting, **mixture.replay_share(),
            "heldout_mean_increase": float(np.nanmean(increase)),
            "heldout_sem": float(np.nanstd(increase, ddof=1) / np.sqrt(np.isfinite(increase).sum())),
            "heldout_n": int(np.isfinite(increase).sum()), "train_loss": result.train_loss,
            "seconds": time.perf_counter() - start}


def summarize(cells: list[dict]) -> tuple[list[dict], str]:
    rows = []
    keys = sorted({(c["task"], c["lr"], c["n_task"]) for c in cells})
    by = {(c["task"], c["lr"], c["n_task"], c["arm"]): c for c in cells}
    for task, lr, n in keys:
        none, rnd = by.get((task, lr, n, "none")), by.get((task, lr, n, "random"))
        row = {"task": task, "lr": lr, "n_task": n, "none": none and none["heldout_mean_increase"],
               "random": rnd and rnd["heldout_mean_increase"], "n_rep": rnd and rnd["n_rep"],
               "replay_token_share": rnd and rnd["replay_token_share"]}
        row["restores"] = (none is not None and rnd is not None and 0 <= row["random"] < row["none"])
        rows.append(row)
    fmt = lambda v, f="+.4f": "" if v is None else format(v, f)  # noqa: E731
    lines = ["# Replay regime sweep", "", "Held-out NLL increase (nats/token) after fine-tuning; `random` = task + "
             "n_rep random self-sampled replay examples, one pass over both. Restores = 0 <= random < none.", "",
             "| task | lr | n_task | n_rep | none | random | replay share of loss tokens | restores |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['lr']:g} | {r['n_task']} | {r['n_rep'] or ''} | {fmt(r['none'])} | "
                     f"{fmt(r['random'])} | {fmt(r['replay_token_share'], '.1%')} | "
                     f"{'yes' if r['restores'] else 'no'} |")
    return rows, "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True,
                    help="the study's run folder (matrix/ supplies data and base scores)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    ap.add_argument("--n-task", default="24,96,384", help="task examples per fine-tuning (one pass)")
    ap.add_argument("--lr", default="1e-4,3e-5")
    ap.add_argument("--rate", type=float, default=1 / 3, help="replay examples per task example (study's replay.rate)")
    ap.add_argument("--weighting", default="example", choices=["token", "example"])
    ap.add_argument("--heldout", type=int, default=400)
    args = ap.parse_args()
    run = Run.open(args.runs / "matrix")
    if run.base_scores() is None:
        raise SystemExit("the matrix run has no base scores yet; start `run.sh matrix` first")
    (args.out / "cells").mkdir(parents=True, exist_ok=True)
    grid = [(t, float(lr), int(n), arm) for n in args.n_task.split(",") for lr in args.lr.split(",")
            for t in args.tasks.split(",") for arm in ("none", "random")]
    for k, (task, lr, n, arm) in enumerate(grid, 1):
        path = args.out / "cells" / f"{cell_name(task, lr, n, arm)}.json"
        if not path.is_file():
            rec = run_cell(run, task, lr, n, args.rate, args.weighting, arm, args.heldout)
            write_json(path, rec)
            print(f"[{k}/{len(grid)}] {task} lr={lr:g} n_task={n} {arm}: {rec['heldout_mean_increase']:+.4f} "
                  f"({rec['steps']} steps, {rec['seconds']:.0f}s)", flush=True)
        cells = [json.loads(p.read_text()) for p in sorted((args.out / "cells").glob("*.json"))]
        rows, md = summarize(cells)
        write_json(args.out / "summary.json", {"settings": vars(args) | {"runs": str(args.runs), "out": str(args.out)},
                                               "rows": rows, "cells": cells})
        write_text(args.out / "summary.md", md)
    print(md)


if __name__ == "__main__":
    main()
