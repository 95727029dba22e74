"""bf16 autocast against fp32 on this CPU, for scoring and fine-tuning: speed and agreement of Z.

For each of a few Natural-Instructions tasks, the same fine-tuning (same seed, same data) runs once
in fp32 and once under bf16 autocast (Trainer's `bf16=True` on CPU), and the upstream set is scored
in fp32 and under bf16 autocast. Three forgetting matrices come out, all against the fp32 base scores
except the bf16 one:
  Z_fp32       fp32 fine-tuning, fp32 scoring (the reference)
  Z_bf16score  fp32 fine-tuning, bf16 scoring (base scored in bf16 too): scoring alone
  Z_bf16       bf16 fine-tuning, bf16 scoring: the whole pipeline in bf16
Agreement with the reference: Pearson and RMSE / std(Z_fp32). The study uses bf16 only if the
whole-pipeline Pearson is >= 0.99 (issue 12). Fine-tuning and scoring are timed side by side in one run.

    python benchmarks/bench_bf16.py                      # smollm2, 3 tasks x 128 self-sampled examples
    python benchmarks/bench_bf16.py --tasks 2 --n 64     # quicker
    python benchmarks/bench_bf16.py --json out.json
    python benchmarks/bench_bf16.py --score-mode cast   # bf16 scoring by casting the weights (score.dtype)
    python benchmarks/bench_bf16.py --steps 3            # short fine-tuning (default 12; try 48 for long)

Uses the real SmolLM2-135M-Instruct and offline data (`lmforget resources fetch`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import time

import numpy as np
import torch

from lmforget.collect import load_recipe_upstream
from lmforget.config import load_recipe
from lmforget.data import load_tasks
from lmforget.finetune import build_train_set, plan_steps, train
from lmforget.models import load_recipe_model
from lmforget.scoring.upstream import score_upstream

TASKS = ["winogrande_answer_generation", "qasc_topic_word_to_generate_related_fact",
         "multirc_correct_answer_single_sentence", "qasc_find_overlapping_words"]


def _recipe(n: int, tasks: list[str], steps: int = 12, data: str = "ni"):
    if data == "tiny":  # packaged data (48 upstream texts, 10 small tasks): no BIG-bench archive needed
        return load_recipe("tiny", ["model.name=smollm2", "model.dtype=float32", "finetune.lr=1.0e-4",
                                    f"finetune.steps={steps}", "finetune.bf16=false", "finetune.warmup_steps=0",
                                    "finetune.max_epochs=1000"])  # the steps asked for, not an epoch cap
    upstream = {"format": "self-sampled", "new_tokens": 48, "context_sentences": 1, "seed": 0,
                "contexts": {"format": "wikipedia", "n": n, "seed": 0, "max_tokens": 32}}
    return load_recipe("demo", [
        "upstream=" + json.dumps(upstream),
        "tasks.ni.tasks=" + json.dumps(tasks),
        "finetune.lr=1.0e-4", f"finetune.steps={steps}", "finetune.bf16=false",
    ])


def _autocast(on: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if on else contextlib.nullcontext()


SCORE_MODE = "autocast"  # or "cast": a bf16 copy of the weights, as a recipe's score.dtype=bfloat16 does


def _score(model, tok, upstream, cfg, bf16: bool) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    if bf16 and SCORE_MODE == "cast":
        model = copy.deepcopy(model).to(torch.bfloat16)
    with _autocast(bf16 and SCORE_MODE == "autocast"):
        frame = score_upstream(model, tok, upstream, cfg, progress=False)
    return frame["nll"].to_numpy(np.float64), time.perf_counter() - start


def _agreement(ref: np.ndarray, other: np.ndarray) -> dict:
    r = float(np.corrcoef(ref.ravel(), other.ravel())[0, 1])
    rmse = float(np.sqrt(np.mean((ref - other) ** 2)))
    return {"pearson": r, "rmse": rmse, "rmse_over_std": rmse / float(ref.std())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--n", type=int, default=128, help="self-sampled upstream examples")
    ap.add_argument("--data", choices=["ni", "tiny"], default="ni",
                    help="ni: self-sampled upstream + Natural-Instructions (needs BIG-bench); tiny: packaged data")
    ap.add_argument("--steps", type=int, default=12, help="fine-tuning steps per task (short vs long)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--score-mode", choices=["autocast", "cast"], default="autocast",
                    help="bf16 scoring: autocast over fp32 weights, or a bf16 copy of the weights")
    args = ap.parse_args()
    global SCORE_MODE
    SCORE_MODE = args.score_mode
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = _recipe(args.n, TASKS[:args.tasks], args.steps, args.data)
    upstream = load_recipe_upstream(recipe, progress=False, log=print)
    tasks = load_tasks(list(recipe.tasks.values()))[:args.tasks]
    model, tok = load_recipe_model(recipe)
    base = {bf: _score(model, tok, upstream, recipe.score, bf) for bf in (False, True)}
    rows: dict[str, list[np.ndarray]] = {"fp32": [], "bf16score": [], "bf16": []}
    secs = {"train_fp32": 0.0, "train_bf16": 0.0, "score_fp32": base[False][1], "score_bf16": base[True][1]}
    for task in tasks:
        for bf in (False, True):
            model, tok = load_recipe_model(recipe)
            cfg = recipe.finetune.model_copy(update={"bf16": bf})
            items = build_train_set(tok, task, cfg)
            result = train(model, tok, items, cfg, max_steps=plan_steps(len(items), cfg), progress=False)
            secs[f"train_{'bf16' if bf else 'fp32'}"] += result.seconds
            after32, s32 = _score(result.model, tok, upstream, recipe.score, False)
            after16, s16 = _score(result.model, tok, upstream, recipe.score, True)
            secs["score_fp32"] += s32
            secs["score_bf16"] += s16
            if bf:
                rows["bf16"].append(after16 - base[True][0])
            else:
                rows["fp32"].append(after32 - base[False][0])
                rows["bf16score"].append(after16 - base[True][0])
            print(f"{task.name} bf16={bf}: train {result.seconds:.1f}s, loss {result.train_loss:.4f}, "
                  f"score fp32 {s32:.1f}s / bf16 {s16:.1f}s", flush=True)
    Z = {k: np.stack(v) for k, v in rows.items()}
    out = {
        "shape": list(Z["fp32"].shape), "mean_Z_fp32": float(Z["fp32"].mean()), "std_Z_fp32": float(Z["fp32"].std()),
        "scoring_only": _agreement(Z["fp32"], Z["bf16score"]),
        "whole_pipeline": _agreement(Z["fp32"], Z["bf16"]),
        "seconds": secs,
        "speedup_train": secs["train_fp32"] / secs["train_bf16"],
        "speedup_score": secs["score_fp32"] / secs["score_bf16"],
        "threads": torch.get_num_threads(), "score_mode": SCORE_MODE, "steps": args.steps, "data": args.data,
    }
    out["use_bf16"] = out["whole_pipeline"]["pearson"] >= 0.99
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
