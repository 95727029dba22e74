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
from lmforget.replay.heldout import split_heldout
from lmforget.replay.mixture import ReplayMixture, mixture_steps, n_replay
from lmforget.replay.online import MixtureTrainer
from lmforget.replay.selection import select_random
from lmforget.runs import Run
from lmforget.unit import FineTune
from lmforget.workdir import task_slug

DEFAULT_TASKS = ["qasc_answer_generation", "mctaco_answer_generation_event_duration"]


def cell_name(task: str, lr: float, n_task: int, arm: str, rate: float) -> str:
    """`none` does not depend on the rate; each `random` cell is one rate."""
    return f"{task_slug(task)}__lr{lr:g}__n{n_task}__{arm}" + (f"__r{rate:.4g}" if arm == "random" else "")


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
    unit = FineTune(recipe, task, finetune=ft)
    tok, task_items = unit.tokenizer, unit.train_set
    n_rep = n_replay(len(task_items), rate) if arm == "random" else 0
    steps = mixture_steps(len(task_items), n_rep, ft, rate if n_rep else None)
    picks = split.pool[select_random(len(split.pool), n_rep, seed=0)] if n_rep else split.pool[:0]
    mixture = ReplayMixture(task_items, [upstream.examples[int(c)] for c in picks], tok, ft.max_length,
                            split.heldout_ids)
    result = unit.train(mixture, steps=steps, trainer_cls=MixtureTrainer.weighted(weighting))
    after = unit.score(UpstreamSet([upstream.examples[int(c)] for c in split.heldout]))
    unit.release()
    increase = after["nll"].to_numpy(np.float64) - base[split.heldout]
    return {"task": task_name, "lr": lr, "n_task": len(task_items), "rate": rate, "arm": arm, "n_rep": n_rep,
            "steps": steps, "loss_weighting": weighting, **mixture.replay_share(),
            "heldout_mean_increase": float(np.nanmean(increase)),
            "heldout_sem": float(np.nanstd(increase, ddof=1) / np.sqrt(np.isfinite(increase).sum())),
            "heldout_n": int(np.isfinite(increase).sum()), "train_loss": result.train_loss,
            "seconds": time.perf_counter() - unit.start,
            "heldout_ids": list(split.heldout_ids), "heldout_increase": [float(x) for x in increase]}


def paired(a: dict | None, b: dict | None) -> tuple[float | None, float | None]:
    """Mean and s.e.m. of b - a over the held-out examples both cells scored (the same examples: paired)."""
    if a is None or b is None or "heldout_increase" not in a or "heldout_increase" not in b:
        return None, None
    if a["heldout_ids"] != b["heldout_ids"]:
        raise SystemExit(f"cells of {a['task']} scored different held-out sets; use one --heldout per sweep folder")
    d = np.asarray(b["heldout_increase"]) - np.asarray(a["heldout_increase"])
    d = d[np.isfinite(d)]
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def summarize(cells: list[dict]) -> tuple[list[dict], str]:
    rows = []
    nones = {(c["task"], c["lr"], c["n_task"]): c for c in cells if c["arm"] == "none"}
    randoms = sorted((c for c in cells if c["arm"] == "random"),
                     key=lambda c: (c["task"], -c["lr"], c["n_task"], c["rate"]))
    for rnd in randoms:
        none = nones.get((rnd["task"], rnd["lr"], rnd["n_task"]))
        row = {"task": rnd["task"], "lr": rnd["lr"], "n_task": rnd["n_task"], "rate": rnd["rate"],
               "n_rep": rnd["n_rep"], "none": none and none["heldout_mean_increase"],
               "none_sem": none and none["heldout_sem"], "random": rnd["heldout_mean_increase"],
               "random_sem": rnd["heldout_sem"], "replay_token_share": rnd["replay_token_share"],
               "replay_example_share": rnd.get("replay_example_share")}
        row["random_minus_none"], row["random_minus_none_sem"] = paired(none, rnd)
        row["restores"] = none is not None and 0 <= row["random"] < row["none"]
        rows.append(row)
    fmt = lambda v, f="+.4f": "" if v is None else format(v, f)  # noqa: E731
    lines = ["# Replay regime sweep", "", "Held-out NLL increase (nats/token, mean +- s.e.m. over the held-out "
             "examples) after fine-tuning; `random` = task + n_rep = floor(n_task x rate) + 1 random self-sampled "
             "replay examples, one pass over both. random - none is paired over the same held-out examples "
             "(s.e.m. of the per-example difference). Restores = 0 <= random < none.", "",
             "| task | lr | n_task | rate | n_rep | none | random | random - none | replay share of loss "
             "tokens / examples | restores |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        diff = ("" if r["random_minus_none"] is None
                else f"{r['random_minus_none']:+.4f} +- {r['random_minus_none_sem']:.4f}")
        lines.append(f"| {r['task']} | {r['lr']:g} | {r['n_task']} | {r['rate']:.3g} | {r['n_rep']} | "
                     f"{fmt(r['none'])} +- {fmt(r['none_sem'], '.4f')} | {fmt(r['random'])} +- "
                     f"{fmt(r['random_sem'], '.4f')} | {diff} | {fmt(r['replay_token_share'], '.1%')} / "
                     f"{fmt(r['replay_example_share'], '.1%')} | {'yes' if r['restores'] else 'no'} |")
    return rows, "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True,
                    help="the study's run folder (matrix/ supplies data and base scores)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    ap.add_argument("--n-task", default="48,192",
                    help="task examples per fine-tuning, one pass (48 = the matrix run's 12 steps of 4)")
    ap.add_argument("--lr", default="1e-4", help="learning rates (1e-4 = the matrix run's)")
    ap.add_argument("--rate", default="0.1667,0.6667",
                    help="replay rates < 1 (n_rep = floor(n_task x rate) + 1: 9 and 33 for 48, 33 and 129 for 192)")
    ap.add_argument("--weighting", default="example", choices=["token", "example"])
    ap.add_argument("--heldout", type=int, default=400)
    args = ap.parse_args()
    run = Run.open(args.runs / "matrix")
    if run.base_scores() is None:
        raise SystemExit("the matrix run has no base scores yet; start `run.sh matrix` first")
    (args.out / "cells").mkdir(parents=True, exist_ok=True)
    rates = [float(r) for r in args.rate.split(",")]
    grid = [(t, float(lr), int(n), arm, rate) for n in args.n_task.split(",") for lr in args.lr.split(",")
            for t in args.tasks.split(",")
            for arm, rate in [("none", 0.0)] + [("random", r) for r in rates]]
    for k, (task, lr, n, arm, rate) in enumerate(grid, 1):
        path = args.out / "cells" / f"{cell_name(task, lr, n, arm, rate)}.json"
        if not path.is_file():
            rec = run_cell(run, task, lr, n, rate, args.weighting, arm, args.heldout)
            write_json(path, rec)
            print(f"[{k}/{len(grid)}] {task} lr={lr:g} n_task={n} {arm}"
                  f"{f' rate={rate:.3g}' if arm == 'random' else ''}: {rec['heldout_mean_increase']:+.4f} "
                  f"({rec['n_rep']} replayed, {rec['steps']} steps, {rec['seconds']:.0f}s)", flush=True)
        cells = [json.loads(p.read_text()) for p in sorted((args.out / "cells").glob("*.json"))]
        rows, md = summarize(cells)
        write_json(args.out / "summary.json", {"settings": vars(args) | {"runs": str(args.runs), "out": str(args.out)},
                                               "rows": rows, "cells": cells})
        write_text(args.out / "summary.md", md)
    print(md)


if __name__ == "__main__":
    main()
