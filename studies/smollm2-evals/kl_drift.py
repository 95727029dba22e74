"""Does KL replay hold the model at theta_0? A diagnostic of the `kl-replay-only` arm (results/kl_drift.md).

At theta_0 the KL term is zero and so is its gradient, exactly, when an example is forwarded alone, as its
targets were computed (`lmforget.replay.kl.base_targets`). Training forwards padded batches, whose logits
differ from the unpadded ones in the last bits, so there the gradient is tiny but nonzero on every weight.
AdamW divides each weight's gradient by its own running scale, so its first step moves every weight by about
lr, whatever the gradient's size. This script measures both on SmolLM2-135M-Instruct (fp32): the KL and
gradient at theta_0 for one batch of 4 replay examples, padded and one at a time, then the held-out NLL
increase over 10 AdamW steps (lr 1e-4, no warm-up, the study's regime) on that batch's KL alone.

    PYTHONPATH=src python studies/smollm2-evals/kl_drift.py   # about 3 minutes on one CPU thread
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lmforget.atomic import write_text
from lmforget.encoding import encode_upstream
from lmforget.finetune import _collate
from lmforget.models import load_model
from lmforget.replay.heldout import split_heldout
from lmforget.replay.kl import base_targets, batch_kl, collate_with_targets
from lmforget.replay.mixture import ReplayMixture
from lmforget.runs import Run

HERE = Path(__file__).resolve().parent


def heldout_nll(model, tokenizer, examples) -> float:
    """Mean over examples of the continuation's mean token NLL, each example forwarded alone."""
    model.eval()
    values = []
    with torch.no_grad():
        for ex in examples:
            enc = encode_upstream(tokenizer, ex, 512)
            ids = torch.tensor([enc.input_ids])
            mask = torch.tensor(enc.loss_mask[1:], dtype=torch.bool)
            nll = torch.nn.functional.cross_entropy(model(input_ids=ids).logits[0, :-1], ids[0, 1:], reduction="none")
            values.append(float(nll[mask].mean()))
    model.train()
    return sum(values) / len(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=HERE / "runs" / "matrix")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "kl_drift.md")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-4)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, tokenizer = load_model("smollm2", dtype="float32")
    upstream = Run.open(args.run).upstream().examples
    split = split_heldout([ex.id for ex in upstream], 400, 0)  # the mitigation study's held-out draw
    replay = [upstream[int(c)] for c in split.pool[:4]]
    heldout = [upstream[int(c)] for c in split.heldout[:40]]
    targets = base_targets(model, tokenizer, replay, k=256, max_length=512)
    mixture = ReplayMixture([], replay, tokenizer, 512, targets=targets)
    items = [mixture[i] for i in range(len(replay))]
    collate = collate_with_targets(_collate(tokenizer))
    lines = ["# KL replay at theta_0 under AdamW", "", f"Made by `{Path(__file__).name}` ({len(replay)} replay "
             f"examples of {[len(i['input_ids']) for i in items]} tokens; {len(heldout)} held-out examples).", "",
             "| forward | max KL at theta_0 | max gradient | weights with a nonzero gradient |", "|---|---:|---:|---:|"]
    model.train()
    for label, batches in (("padded batch of 4", [items]), ("one example at a time", [[i] for i in items])):
        model.zero_grad()
        kls = []
        for b in batches:
            batch = collate(b)
            kl = batch_kl(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float(),
                          batch)
            kls.append(kl.detach())
            (kl.mean() / len(batches)).backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        lines.append(f"| {label} | {float(torch.cat(kls).abs().max()):.2e} | {float(grad.abs().max()):.2e} | "
                     f"{100 * float((grad != 0).float().mean()):.1f}% |")
    model.zero_grad()
    before = heldout_nll(model, tokenizer, heldout)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    batch = collate(items)
    lines += ["", f"AdamW (lr {args.lr:g}, no warm-up) on the padded batch's KL alone:", "",
              "| step | batch KL before the step | held-out NLL increase after it |", "|---:|---:|---:|"]
    for step in range(1, args.steps + 1):
        opt.zero_grad()
        loss = batch_kl(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float(),
                        batch).mean()
        loss.backward()
        opt.step()
        drift = heldout_nll(model, tokenizer, heldout) - before
        lines.append(f"| {step} | {float(loss.detach()):.2e} | {drift:+.4f} |")
    write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
