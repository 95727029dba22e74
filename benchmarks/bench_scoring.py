"""Throughput of lmforget's scorer vs a naive per-example loop vs fixed-size padded batches.

All three score the same encoded examples (random token ids with log-normal lengths, so padding
matters as it does on real data) with the same model, in one run, and must agree on the numbers.

    python benchmarks/bench_scoring.py                          # tiny:llama as shipped (hidden 64, 2 layers)
    python benchmarks/bench_scoring.py --hidden 256 --layers 4  # more compute per token
    python benchmarks/bench_scoring.py --model smollm2 --n 64 --max-len 256
    python benchmarks/bench_scoring.py --vocab 50304 --answer-share 0.25   # chat upstream, answers scored

It runs single-threaded by default: on a shared machine, two OpenMP threads competing with other
processes make timings swing by 10x or more, which drowns the differences being measured.
Pass --threads 0 for torch's own choice.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lmforget.encoding import Encoded
from lmforget.scoring import HFScorer, padding_waste, plan_batches


def make_examples(n: int, vocab: int, lo: int, hi: int, seed: int, answer_share: float = 1.0) -> list[Encoded]:
    """Random token ids with log-normal lengths; the last `answer_share` of each is scored (1.0 = raw text,
    less = a chat scored on its answer only, as for instruction-tuning upstream data)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(mean=np.log(80), sigma=0.8, size=n)), lo, hi).astype(int)
    out = []
    for L in lengths:
        L = int(L)
        ids = rng.integers(0, vocab, size=L).tolist()
        n_scored = max(1, round(answer_share * (L - 1)))
        out.append(Encoded(ids, [False] * (L - n_scored) + [True] * n_scored))
    return out


def _nll_from_logits(logits: torch.Tensor, ids: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    lp = logits[:, :-1].float().log_softmax(-1)
    tok = -lp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = scored[:, 1:]
    return (tok * mask).sum(1) / mask.sum(1)


def naive(model, examples: list[Encoded]) -> np.ndarray:
    """One example at a time, full fp32 logits: what a first script does."""
    out = []
    with torch.inference_mode():
        for e in examples:
            ids = torch.tensor([e.input_ids])
            out.append(float(_nll_from_logits(model(input_ids=ids).logits, ids, torch.tensor([e.scored]))[0]))
    return np.array(out)


def fixed_batches(model, examples: list[Encoded], batch_size: int, pad_id: int) -> np.ndarray:
    """Batches of `batch_size` in input order, right-padded to the batch's longest, full fp32 logits."""
    out = []
    with torch.inference_mode():
        for s in range(0, len(examples), batch_size):
            batch = examples[s:s + batch_size]
            L = max(len(e.input_ids) for e in batch)
            ids = torch.full((len(batch), L), pad_id)
            mask = torch.zeros((len(batch), L), dtype=torch.long)
            scored = torch.zeros((len(batch), L), dtype=torch.bool)
            for r, e in enumerate(batch):
                ids[r, :len(e.input_ids)] = torch.tensor(e.input_ids)
                mask[r, :len(e.input_ids)] = 1
                scored[r, :len(e.input_ids)] = torch.tensor(e.scored)
            out.extend(_nll_from_logits(model(input_ids=ids, attention_mask=mask).logits, ids, scored).tolist())
    return np.array(out)


def load(spec: str, hidden: int, layers: int, vocab: int | None = None):
    from transformers import AutoModelForCausalLM

    from lmforget.models import load_model, load_tiny_tokenizer, tiny_config

    if spec.startswith("tiny:") and ((hidden, layers) != (64, 2) or vocab):
        tok = load_tiny_tokenizer()
        extra = {"vocab_size": vocab} if vocab else {}
        cfg = tiny_config(spec.split(":", 1)[1], tok, hidden_size=hidden, num_hidden_layers=layers,
                          num_attention_heads=4, **extra)
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval(), tok
    return load_model(spec, device="cpu", dtype="float32")


def interleaved(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Run each method once per round, `repeats` rounds; keep each one's best time.

    Interleaving spreads any outside load evenly over the methods; the best round is the least disturbed.
    """
    values, best = {}, {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            values[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return values, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny:llama")
    ap.add_argument("--hidden", type=int, default=64, help="tiny models: hidden size")
    ap.add_argument("--layers", type=int, default=2, help="tiny models: layers")
    ap.add_argument("--vocab", type=int, default=None,
                    help="tiny models: vocabulary size (real tokenizers have 32k-100k; the tiny one 768)")
    ap.add_argument("--answer-share", type=float, default=1.0,
                    help="score only the last share of each example (chat upstream scored on answers)")
    ap.add_argument("--n", type=int, default=300, help="examples")
    ap.add_argument("--min-len", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--token-budget", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3, help="time each method this many times, keep the best")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tok = load(args.model, args.hidden, args.layers, args.vocab)
    vocab = model.config.vocab_size
    examples = make_examples(args.n, vocab, args.min_len, args.max_len, args.seed, args.answer_share)
    lengths = np.array([len(e.input_ids) for e in examples])
    n_tokens = int(lengths.sum())
    scorer = HFScorer(model, tok, token_budget=args.token_budget, batch_size=args.batch_size, progress=False)
    warm = examples[:8]
    scorer.score_encoded(warm), naive(model, warm), fixed_batches(model, warm, args.batch_size, tok.pad_token_id)

    values, best = interleaved({
        "ours": lambda: scorer.score_encoded(examples)[0],
        "naive": lambda: naive(model, examples),
        "fixed": lambda: fixed_batches(model, examples, args.batch_size, tok.pad_token_id),
    }, args.repeats)
    ours, ref, fixed = values["ours"], values["naive"], values["fixed"]
    t_ours, t_naive, t_fixed = best["ours"], best["naive"], best["fixed"]

    ours_batches = plan_batches(lengths, args.token_budget, args.batch_size)
    fixed_groups = [np.arange(s, min(s + args.batch_size, len(lengths)))
                    for s in range(0, len(lengths), args.batch_size)]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {args.model} ({n_params / 1e6:.1f}M params, vocab {vocab}), {args.n} examples, "
          f"scored share {args.answer_share:g}, "
          f"lengths {lengths.min()}..{lengths.max()} (median {int(np.median(lengths))}), {n_tokens} tokens, "
          f"torch threads {torch.get_num_threads()}, best of {args.repeats}")
    print(f"agreement: max |ours - naive| = {np.nanmax(np.abs(ours - ref)):.2e}, "
          f"max |fixed - naive| = {np.nanmax(np.abs(fixed - ref)):.2e}")
    rows = [
        ("lmforget HFScorer (sorted, token budget)", t_ours, padding_waste(lengths, ours_batches), len(ours_batches)),
        ("naive loop (one example at a time)", t_naive, 0.0, len(examples)),
        (f"fixed batches of {args.batch_size} (input order)", t_fixed, padding_waste(lengths, fixed_groups),
         len(fixed_groups)),
    ]
    print(f"{'method':44s} {'tokens/s':>10s} {'seconds':>8s} {'passes':>7s} {'padding':>8s}")
    for name, t, waste, passes in rows:
        print(f"{name:44s} {n_tokens / t:10.0f} {t:8.2f} {passes:7d} {100 * waste:7.1f}%")
    print(f"speed-up: {t_naive / t_ours:.2f}x vs naive loop, {t_fixed / t_ours:.2f}x vs fixed batches")


if __name__ == "__main__":
    main()
