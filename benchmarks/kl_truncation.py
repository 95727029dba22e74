"""How much top-k KL replay loses against exact KL: base vs a briefly fine-tuned model, on self-samples.

Fine-tunes a copy of the model on one small packaged task (tiny/tasks.jsonl `opposites`, lr 1e-4, a few
steps of 4: a model that moved the way fine-tuning moves it), then compares, on pinned self-sampled
continuations, the exact KL(p_base || p_ft) per position with the top-k + bucket KL and the cosine of
their gradients with respect to the logits (`lmforget.replay.kl.truncation_error`).

    OMP_NUM_THREADS=1 python benchmarks/kl_truncation.py --model smollm2 --upstream studies/smollm2-ni/matrix.yaml
"""

from __future__ import annotations

import argparse
import copy
import json


def main() -> None:
    from lmforget.config import load_recipe
    from lmforget.data import load_tasks, load_upstream, load_upstream_arg
    from lmforget.finetune import build_train_set, train
    from lmforget.models import load_model
    from lmforget.replay.kl import truncation_error

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny:llama")
    ap.add_argument("--upstream", default="src/lmforget/resources/tiny/upstream.jsonl",
                    help="a records JSONL file, or a recipe .yaml whose upstream set to use (self-samples)")
    ap.add_argument("-n", type=int, default=16, help="upstream examples")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--ks", default="16,64,256,1024")
    args = ap.parse_args()
    base, tok = load_model(args.model, device="cpu", dtype="float32", seed=0)
    recipe = load_recipe("tiny")
    task = next(t for t in load_tasks(list(recipe.tasks.values())) if t.name == "opposites")
    cfg = recipe.finetune.model_copy(update={"lr": args.lr, "warmup_steps": 0, "max_epochs": 100.0})
    tuned = train(copy.deepcopy(base), tok, build_train_set(tok, task, cfg), cfg, max_steps=args.steps,
                  progress=False).model
    if args.upstream.endswith(".yaml"):
        from lmforget.self_sampling import self_sampled_upstream

        spec = load_recipe(args.upstream).upstream
        up = self_sampled_upstream(spec, args.model, progress=False) if spec.format == "self-sampled" \
            else load_upstream(spec)
        examples = list(up)[: args.n]
    else:
        examples = list(load_upstream_arg(args.upstream))[: args.n]
    ks = [int(k) for k in args.ks.split(",")]
    out = truncation_error(base, tuned, tok, examples, ks, max_length=512)
    print(json.dumps({"model": args.model, "vocab": base.config.vocab_size, "examples": len(examples),
                      "steps": args.steps, "lr": args.lr, **out}, indent=1))


if __name__ == "__main__":
    main()
