"""Per-example mean NLL with a Hugging Face causal LM: length-sorted, token-budget batches.

Why it is shaped this way:
- Scoring N upstream examples before and after every fine-tuning run dominates the cost of collect,
  so batches are packed longest-first under a token budget (little padding, and an out-of-memory error
  shows up in the first batch, not the last).
- The output layer of a 50k-vocabulary model turns a [batch, length, hidden] block into a
  [batch, length, vocab] one; in fp32 that is what runs GPUs out of memory. We run the backbone only,
  keep the hidden states of the positions that predict a scored token, and apply the output embedding
  chunk by chunk, with log-softmax in fp32 per chunk.
- Position ids come from the attention mask, so left and right padding give the same numbers
  (docs/protocol.md section 2: before and after must be scored identically).
"""

from __future__ import annotations

import inspect
from typing import Sequence

import numpy as np

from lmforget.data.types import UpstreamExample
from lmforget.encoding import Encoded, encode_upstream
from lmforget.errors import LmforgetError
from lmforget.progress import token_progress
from lmforget.scoring.base import SCORERS, ScoreResult

# Config fields of architectures that change logits after the output layer (Gemma-2 soft-capping,
# Cohere/Granite scaling, ...). A model with any of these set is scored through its full forward.
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def plan_batches(lengths: Sequence[int], token_budget: int, batch_size: int) -> list[np.ndarray]:
    """Indices of each batch: longest first, each batch's rows x padded length <= token_budget.

    An example longer than the budget still runs, alone. Ties keep input order (deterministic).
    """
    if token_budget < 1 or batch_size < 1:
        raise LmforgetError("token budget and batch size must be positive")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])  # sorted: the first row sets the padded length
        rows = max(1, min(batch_size, token_budget // max(longest, 1)))
        batches.append(order[start:start + rows])
        start += rows
    return batches


def padding_waste(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of computed positions that are padding, for a given batching of `lengths`."""
    lengths = np.asarray(lengths, dtype=np.int64)
    real = padded = 0
    for b in batches:
        lb = lengths[np.asarray(b, dtype=np.int64)]
        real += int(lb.sum())
        padded += int(lb.max()) * len(lb) if len(lb) else 0
    return 1.0 - real / padded if padded else 0.0


def _unwrap(model):
    """The transformers model under a PEFT wrapper (LoRA layers stay active)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


@SCORERS.register("hf")
class HFScorer:
    """Mean NLL per example with a transformers causal LM (the PyTorch backend of `Scorer`).

    Parameters
    ----------
    model, tokenizer: as returned by `lmforget.models.load_model` (a PEFT-wrapped model works too).
    max_length: truncate longer inputs keeping their end (None: no truncation).
    token_budget: at most this many (padded) tokens per forward pass.
    batch_size: at most this many examples per forward pass.
    padding: "right" or "left"; results do not depend on it (tested).
    logits_budget_mb: memory for one chunk of fp32 logits (scored positions x vocab).
    progress: show a rich progress bar with ETA on stderr, labelled `description`.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        max_length: int | None = None,
        token_budget: int = 16384,
        batch_size: int = 64,
        padding: str = "right",
        logits_budget_mb: int = 256,
        progress: bool = True,
        description: str = "scoring",
    ) -> None:
        if padding not in ("left", "right"):
            raise LmforgetError(f"padding must be 'left' or 'right', not {padding!r}")
        if max_length is not None and max_length < 2:
            raise LmforgetError("max_length must be at least 2 tokens")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.token_budget = int(token_budget)
        self.batch_size = int(batch_size)
        self.padding = padding
        self.logits_budget_mb = int(logits_budget_mb)
        self.progress = progress
        self.description = description
        if self.token_budget < 1 or self.batch_size < 1:
            raise LmforgetError("token budget and batch size must be positive")
        if tokenizer.pad_token_id is None:
            raise LmforgetError("the tokenizer has no pad token (load it with lmforget.models.load_tokenizer)")

    # -- public API -----------------------------------------------------------------------------

    def encode(self, examples: Sequence[UpstreamExample]) -> list[Encoded]:
        return [encode_upstream(self.tokenizer, ex, self.max_length) for ex in examples]

    def score(self, examples: Sequence[UpstreamExample]) -> list[ScoreResult]:
        """Mean NLL of each example over its scored tokens, in input order."""
        nll, n = self.score_encoded(self.encode(examples))
        return [ScoreResult(ex.id, float(v), int(k)) for ex, v, k in zip(examples, nll, n, strict=True)]

    def score_encoded(self, encoded: Sequence[Encoded]) -> tuple[np.ndarray, np.ndarray]:
        """(mean NLL float64 [N], scored-token counts int64 [N]) for pre-encoded inputs, input order."""
        import torch

        n_tok = np.array([e.n_scored for e in encoded], dtype=np.int64)
        nll = np.full(len(encoded), np.nan, dtype=np.float64)
        todo = np.flatnonzero(n_tok > 0)
        if len(todo) == 0:
            return nll, n_tok
        lengths = np.array([len(encoded[i].input_ids) for i in todo], dtype=np.int64)
        batches = [todo[b] for b in plan_batches(lengths, self.token_budget, self.batch_size)]

        model = _unwrap(self.model)
        was_training = model.training
        model.eval()
        try:
            runner = _Runner(model, self.logits_budget_mb)
            bar = token_progress(self.progress, int(lengths.sum()), self.description)
            with torch.inference_mode(), bar as advance:
                for rows in batches:
                    batch = [encoded[i] for i in rows]
                    sums = runner.nll_sums(batch, self.tokenizer.pad_token_id, self.padding)
                    nll[rows] = sums / n_tok[rows]
                    advance(sum(len(e.input_ids) for e in batch))
        finally:
            model.train(was_training)
        return nll, n_tok


class _Runner:
    """One forward pass per batch: backbone -> scored hidden states -> output layer in chunks."""

    def __init__(self, model, logits_budget_mb: int) -> None:
        self.model = model
        self.device = model.get_input_embeddings().weight.device
        self.head = model.get_output_embeddings()
        backbone = getattr(model, "base_model", None)
        cfg = model.config
        plain_head = (
            self.head is not None
            and backbone is not None
            and backbone is not model
            and not any(getattr(cfg, k, None) not in (None, 1, 1.0) for k in _LOGIT_POSTPROCESSING)
        )
        self.backbone = backbone if plain_head else None
        target = self.backbone if plain_head else model
        self.pass_positions = "position_ids" in inspect.signature(target.forward).parameters
        vocab = int(cfg.get_text_config().vocab_size) if hasattr(cfg, "get_text_config") else int(cfg.vocab_size)
        self.chunk = max(1, (logits_budget_mb << 20) // (4 * max(vocab, 1)))

    def _inputs(self, batch: Sequence[Encoded], pad_id: int, padding: str):
        import torch

        L = max(len(e.input_ids) for e in batch)
        ids = np.full((len(batch), L), pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), L), dtype=np.int64)
        scored = np.zeros((len(batch), L), dtype=bool)
        for r, e in enumerate(batch):
            n = len(e.input_ids)
            sl = slice(L - n, L) if padding == "left" else slice(0, n)
            ids[r, sl] = e.input_ids
            mask[r, sl] = 1
            scored[r, sl] = e.scored
        to = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        return to(ids), to(mask), to(scored)

    def nll_sums(self, batch: Sequence[Encoded], pad_id: int, padding: str) -> np.ndarray:
        """Sum of NLL over each row's scored tokens (float64 [rows])."""
        import torch

        ids, mask, scored = self._inputs(batch, pad_id, padding)
        kwargs = {"input_ids": ids, "use_cache": False}
        if padding == "left" and not bool(mask.all()):
            kwargs["attention_mask"] = mask
            if self.pass_positions:
                kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        # Right padding needs no mask: under causal attention a real token never sees the pads after
        # it, and its positions already start at 0. Without a mask, attention takes its fused causal path.
        # token t is predicted from the state at t-1; pad -> first token is never scored.
        pred = scored[:, 1:]
        if self.backbone is not None:
            states = self.backbone(**kwargs)[0][:, :-1]
            project = self.head
        else:  # the model post-processes logits: take its own logits, still only where scored
            states = self.model(**kwargs).logits[:, :-1]
            project = None
        out_device = states.device  # differs from the input device when layers span several GPUs
        pred = pred.to(out_device)
        states = states[pred]
        targets = ids[:, 1:].to(out_device)[pred]
        owner = torch.arange(len(batch), device=out_device).unsqueeze(1).expand_as(pred)[pred]
        acc = torch.float32 if out_device.type == "mps" else torch.float64  # MPS has no float64
        sums = torch.zeros(len(batch), dtype=acc, device=out_device)
        for s in range(0, states.shape[0], self.chunk):
            block = states[s:s + self.chunk]
            logits = (project(block) if project is not None else block).float()
            lp = torch.log_softmax(logits, dim=-1)
            tok_nll = -lp.gather(1, targets[s:s + self.chunk].unsqueeze(1)).squeeze(1)
            sums.index_add_(0, owner[s:s + self.chunk], tok_nll.to(acc))
        return sums.cpu().double().numpy()
