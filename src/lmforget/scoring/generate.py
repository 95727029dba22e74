"""Greedy generation and normalised exact match: binary forgetting (docs/protocol.md section 2).

An instruction-tuned model "knows" an upstream example when its greedy answer, cut at the first blank
line and normalised, equals the gold answer. Binary forgetting keeps the examples the base model gets
right and marks those the fine-tuned model no longer matches.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lmforget.data.types import Message, UpstreamExample
from lmforget.encoding import generation_prompt
from lmforget.errors import LmforgetError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
_PUNCT = set(string.punctuation)


def first_paragraph(text: str) -> str:
    """The text before the first blank line (leading whitespace ignored)."""
    return _BLANK_LINE.split(text.lstrip(), maxsplit=1)[0]


def normalize_answer(text: str) -> str:
    """Lower case, strip punctuation, drop articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT and not unicodedata.category(ch).startswith("P"))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> bool:
    """Normalised exact match of a generation (cut at its first blank line) against a gold answer."""
    return normalize_answer(first_paragraph(prediction)) == normalize_answer(gold)


@dataclass(frozen=True)
class GenerationResult:
    id: str
    output: str  # the full decoded generation
    answer: str  # the part compared: text before the first blank line
    correct: bool


def _prompt_messages(example: UpstreamExample) -> Sequence[Message]:
    if example.messages is not None:
        return example.messages
    # raw text with a gold answer: the text is the prompt (a one-turn user chat)
    return (Message("user", example.text or ""),)


def _blank_line_stop(tokenizer, prompt_length: int):
    """Stop a row once its generated text (not the prompt: chat prompts end in a newline) has a blank line."""
    import torch
    from transformers import StoppingCriteria

    class BlankLineStop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_length:], skip_special_tokens=True)
            done = [_BLANK_LINE.search(t.lstrip()) is not None for t in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return BlankLineStop()


def greedy_generate(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 512,
    batch_size: int = 16,
    stop_at_blank_line: bool = True,
) -> list[str]:
    """Greedy continuations of token-id prompts, decoded, in input order.

    Prompts are left-padded and batched by length (similar lengths together). Stopping at the first
    blank line is only a speed-up: the text after it is discarded by exact match anyway.
    """
    import torch

    if max_new_tokens < 1 or batch_size < 1:
        raise LmforgetError("max_new_tokens and batch size must be positive")
    if tokenizer.pad_token_id is None:
        raise LmforgetError("the tokenizer has no pad token (load it with lmforget.models.load_tokenizer)")
    device = model.get_input_embeddings().weight.device
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos += [t for t in (gen_eos if isinstance(gen_eos, list) else [gen_eos]) if t is not None and t not in eos]
    lengths = np.array([len(p) for p in prompts], dtype=np.int64)
    if (lengths == 0).any():
        raise LmforgetError("cannot generate from an empty prompt")
    order = np.argsort(-lengths, kind="stable")
    outputs: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                rows = order[s:s + batch_size]
                L = int(lengths[rows].max())
                ids = torch.full((len(rows), L), tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(rows), L), dtype=torch.long)
                for r, i in enumerate(rows):
                    ids[r, L - lengths[i]:] = torch.tensor(prompts[i], dtype=torch.long)
                    mask[r, L - lengths[i]:] = 1
                extra = {"stopping_criteria": [_blank_line_stop(tokenizer, L)]} if stop_at_blank_line else {}
                out = model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                    max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=eos or None, temperature=None, top_p=None, top_k=None, **extra,
                )
                texts = tokenizer.batch_decode(out[:, L:], skip_special_tokens=True)
                for i, t in zip(rows, texts, strict=True):
                    outputs[i] = t
    finally:
        model.train(was_training)
    return outputs


def generate_and_match(
    model,
    tokenizer,
    examples: Sequence[UpstreamExample],
    *,
    max_new_tokens: int = 512,
    max_length: int | None = None,
    batch_size: int = 16,
) -> list[GenerationResult]:
    """Greedy answer to each example's prompt and whether it exactly matches `example.gold`."""
    prompts = [generation_prompt(tokenizer, _prompt_messages(ex), max_length) for ex in examples]
    golds = [ex.gold for ex in examples]  # raises early for raw text without an answer
    outs = greedy_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return [
        GenerationResult(ex.id, out, first_paragraph(out), exact_match(out, gold))
        for ex, out, gold in zip(examples, outs, golds, strict=True)
    ]
