"""KL replay: on a replayed example, match the base model's next-token distribution instead of its tokens.

Next-token loss on a self-sampled continuation is a one-sample estimate of a distribution the base model
gives exactly; with a few replayed samples seen many times, training fits (memorises) the samples. The KL
objective trains KL(p_base || p_theta) over the vocabulary at every trained position of a replayed example
(the continuation of a self-sample), so replay pulls the model back to the base without teaching anything
the base did not already predict.

The base distribution is computed once per example, before training, and stored as its top-k log-probs plus
the log of the remaining mass as one bucket (`KLTargets`). KL over this coarsened distribution is a lower
bound of the exact KL and equals it when k >= the vocabulary (then the bucket is empty). Storing the exact
distribution costs vocab x positions floats (SmolLM2: 49,152 x 48 x 129 examples x 4 bytes = 1.2 GB per
cell); k = 256 (the default, `replay.kl_top_k`) costs 6.3 MB. `truncation_error` measures what the
truncation loses; benchmarks/kl_truncation.py on SmolLM2-135M-Instruct (fp32, 16 pinned self-samples =
768 positions, base vs 12 steps of lr 1e-4 fine-tuning, exact KL 0.0448 nats/position):

    k      top-k KL vs exact   gradient cosine (w.r.t. the logits)
    16     -28.8%              0.9849
    64     -16.0%              0.9978
    256     -8.1%              0.99974
    1024    -3.2%              0.99998

The value is a lower bound; the pull training sees is essentially the exact one from k = 256 on.

The gradient is written out (`_TopKKL.backward`): q - p_hat, where p_hat is the base probability on the top k
and q rescaled to the base's bucket mass outside it. At theta = theta_0 the logits are bit-identical to the
stored ones, so q == p_hat elementwise and the gradient is exactly zero (tested), not zero up to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from lmforget.data.types import UpstreamExample
from lmforget.encoding import Encoded, encode_upstream
from lmforget.errors import LmforgetError

FORMAT = "lmforget-kl-topk/1"  # the `format` metadata of a targets file


@dataclass
class KLTargets:
    """The base distribution at the n trained positions of one example (in order)."""

    ids: torch.Tensor  # [n, k] int64: the k most likely next tokens
    logp: torch.Tensor  # [n, k] float32: their base log-probabilities
    rest: torch.Tensor  # [n] float32: log of the base mass outside the top k (-inf when k = vocab)

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def rest_logp(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log of the probability mass outside `ids` (one function for the stored and the trained side, so
    the two are bit-identical at the base weights)."""
    masked = logits.scatter(-1, ids, float("-inf"))
    return torch.logsumexp(masked, -1) - torch.logsumexp(logits, -1)


def topk_targets(logits: torch.Tensor, k: int) -> KLTargets:
    """Targets from base logits [n, vocab]: top-k log-probs and the rest as one bucket."""
    if k < 1:
        raise LmforgetError(f"KL replay needs top-k >= 1 (got {k})")
    logits = logits if logits.dtype == torch.float64 else logits.float()
    logp, ids = torch.log_softmax(logits, -1).topk(min(k, logits.shape[-1]), dim=-1)
    return KLTargets(ids, logp, rest_logp(logits, ids))


class _TopKKL(torch.autograd.Function):
    """Per-position KL(p || softmax(logits)) over the top k + one bucket, with its gradient written out."""

    @staticmethod
    def forward(ctx, logits, ids, logp, rest):
        logq_all = torch.log_softmax(logits, -1)
        logq = logq_all.gather(-1, ids)
        logq_rest = rest_logp(logits, ids)
        bucket = torch.where(rest > -math.inf, rest.exp() * (rest - logq_rest), torch.zeros_like(rest))
        ctx.save_for_backward(logq_all, ids, logp, rest, logq_rest)
        return (logp.exp() * (logp - logq)).sum(-1) + bucket

    @staticmethod
    def backward(ctx, grad):
        logq_all, ids, logp, rest, logq_rest = ctx.saved_tensors
        q = logq_all.exp()
        # p_hat: the base probability on the top k; outside it, q rescaled so the bucket holds the base's mass
        ratio = torch.where(rest > -math.inf, (rest - logq_rest).exp(), torch.zeros_like(rest))
        p_hat = (q * ratio.unsqueeze(-1)).scatter(-1, ids, logp.exp())
        return grad.unsqueeze(-1) * (q - p_hat), None, None, None


def topk_kl(logits: torch.Tensor, ids: torch.Tensor, logp: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """KL(p_base || p_theta) at each of P positions: logits [P, vocab] (computed in fp32, or fp64) -> [P]."""
    logits = logits if logits.dtype == torch.float64 else logits.float()
    return _TopKKL.apply(logits, ids, logp.to(logits.dtype), rest.to(logits.dtype))


def trained_positions(enc: Encoded) -> list[int]:
    """Positions t whose token is trained (predicted by the logits at t - 1)."""
    return [t for t, m in enumerate(enc.loss_mask) if m]


def base_targets(model, tokenizer, examples: Sequence[UpstreamExample], *, k: int, max_length: int,
                 progress: Callable[[int], None] | None = None) -> dict[str, KLTargets]:
    """The base model's top-k targets at every trained position of each example, keyed by id.

    One example per forward pass (no padding), in fp32 logits, with the model in eval mode: what the model
    computes on the example alone. Call it with the weights training starts from.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[str, KLTargets] = {}
    try:
        with torch.no_grad():
            for i, ex in enumerate(examples):
                enc = encode_upstream(tokenizer, ex, max_length)
                pos = trained_positions(enc)
                if not pos:
                    raise LmforgetError(f"replay example {ex.id!r} has no trained tokens")
                ids = torch.tensor([enc.input_ids], device=device)
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
                t = topk_targets(logits[torch.tensor(pos, device=device) - 1], k)
                out[ex.id] = KLTargets(t.ids.cpu(), t.logp.cpu(), t.rest.cpu())
                if progress is not None:
                    progress(i + 1)
    finally:
        model.train(was_training)
    return out


def collate_with_targets(base: Callable[[list[dict]], dict]) -> Callable[[list[dict]], dict]:
    """Wrap a padding collator: items may carry "kl" (KLTargets at their label positions); the batch gets
    kl_rows/kl_cols (the logits row and position predicting each target) and the stacked targets."""

    def collate(batch: list[dict]) -> dict:
        out = base([{key: v for key, v in b.items() if key != "kl"} for b in batch])
        rows, cols, ids, logp, rest = [], [], [], [], []
        for r, b in enumerate(batch):
            t = b.get("kl")
            if t is None:
                continue
            pos = [i for i, label in enumerate(b["labels"]) if label != -100]
            if len(pos) != len(t):
                raise LmforgetError(f"KL targets cover {len(t)} positions but the example trains {len(pos)}")
            rows += [r] * len(pos)
            cols += [p - 1 for p in pos]
            ids.append(t.ids)
            logp.append(t.logp)
            rest.append(t.rest)
        k = ids[0].shape[1] if ids else 1
        out["kl_rows"] = torch.tensor(rows, dtype=torch.long)
        out["kl_cols"] = torch.tensor(cols, dtype=torch.long)
        out["kl_ids"] = torch.cat(ids) if ids else torch.zeros((0, k), dtype=torch.long)
        out["kl_logp"] = torch.cat(logp) if logp else torch.zeros((0, k))
        out["kl_rest"] = torch.cat(rest) if rest else torch.zeros(0)
        return out

    return collate


def batch_kl(logits: torch.Tensor, inputs: dict) -> torch.Tensor:
    """KL at the batch's target positions: logits [B, T, V] (unshifted) -> [P]."""
    return topk_kl(logits[inputs["kl_rows"], inputs["kl_cols"]], inputs["kl_ids"], inputs["kl_logp"],
                   inputs["kl_rest"])


# --------------------------------------------------------------------------------------- targets file
def write_targets(path: str | Path, ids: Sequence[str], targets: dict[str, KLTargets], meta: dict) -> Path:
    """A safetensors file of the targets of `ids`, in that order (the order of the JSONL records).

    Tensors: `ids` int32 [P, k], `logp` float32 [P, k], `rest` float32 [P] (all records' positions
    concatenated) and `offsets` int64 [N + 1]: record i's positions are rows offsets[i]:offsets[i + 1],
    the j-th being its j-th trained token (completion_mask = 1), predicted by the logits one position
    before it. Metadata: format, k, model, and the record ids joined by newlines.
    """
    from safetensors.torch import save_file

    from lmforget.atomic import atomic_path

    parts = [targets[i] for i in ids]
    lengths = torch.tensor([0] + [len(t) for t in parts], dtype=torch.int64)
    tensors = {"ids": torch.cat([t.ids for t in parts]).to(torch.int32).contiguous(),
               "logp": torch.cat([t.logp for t in parts]).float().contiguous(),
               "rest": torch.cat([t.rest for t in parts]).float().contiguous(),
               "offsets": torch.cumsum(lengths, 0)}
    info = {"format": FORMAT, "records": "\n".join(ids), **{k: str(v) for k, v in meta.items()}}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=info)
    return path


def read_targets(path: str | Path) -> tuple[list[str], dict[str, KLTargets], dict]:
    """(record ids, targets by id, metadata) of a file `write_targets` wrote."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise LmforgetError(f"KL targets file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            t = {name: fh.get_tensor(name) for name in ("ids", "logp", "rest", "offsets")}
    except Exception as exc:  # safetensors raises its own error types
        raise LmforgetError(f"{path}: not a KL targets file ({str(exc).splitlines()[0]})") from None
    if meta.get("format") != FORMAT:
        raise LmforgetError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    ids = meta.pop("records").split("\n")
    off = t["offsets"].tolist()
    if len(off) != len(ids) + 1:
        raise LmforgetError(f"{path}: {len(ids)} record ids but {len(off) - 1} offset ranges")
    out = {i: KLTargets(t["ids"][a:b].long(), t["logp"][a:b], t["rest"][a:b])
           for i, a, b in zip(ids, off[:-1], off[1:], strict=True)}
    return ids, out, meta


# ------------------------------------------------------------------------------ truncation error
def truncation_error(base, other, tokenizer, examples: Sequence[UpstreamExample], ks: Sequence[int], *,
                     max_length: int) -> dict:
    """How far top-k KL replay is from exact KL replay, between a base and another (fine-tuned) model.

    Per k: the mean top-k KL(p_base || p_other) per position against the exact one (relative error of
    the mean; the top-k value is a lower bound), and the mean cosine similarity of the two gradients with
    respect to the logits (q - p exact vs q - p_hat): whether training sees the same pull.
    """
    exact, kl = 0.0, {k: 0.0 for k in ks}
    cos = {k: 0.0 for k in ks}
    n = 0
    for m in (base, other):
        m.eval()
    with torch.no_grad():
        for ex in examples:
            enc = encode_upstream(tokenizer, ex, max_length)
            pos = torch.tensor(trained_positions(enc)) - 1
            ids = torch.tensor([enc.input_ids], device=next(base.parameters()).device)
            p_logits = base(input_ids=ids).logits[0, pos].double().cpu()
            q_logits = other(input_ids=ids.to(next(other.parameters()).device)).logits[0, pos].double().cpu()
            logp, logq = torch.log_softmax(p_logits, -1), torch.log_softmax(q_logits, -1)
            exact += float((logp.exp() * (logp - logq)).sum())
            g_exact = logq.exp() - logp.exp()
            for k in ks:
                t = topk_targets(p_logits, k)
                z = q_logits.clone().requires_grad_(True)
                with torch.enable_grad():
                    value = topk_kl(z, t.ids, t.logp, t.rest)
                    value.sum().backward()
                kl[k] += float(value.sum())
                cos[k] += float(torch.nn.functional.cosine_similarity(z.grad, g_exact, dim=-1).sum())
            n += len(pos)
    return {"positions": n, "exact_mean_kl": exact / n,
            "top_k": {k: {"mean_kl": kl[k] / n, "relative_error": (kl[k] - exact) / exact,
                          "gradient_cosine": cos[k] / n} for k in ks}}
