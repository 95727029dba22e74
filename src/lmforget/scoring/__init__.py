"""Scoring upstream examples: per-example mean NLL (HF or vLLM backend) and greedy exact match.

`make_scorer` picks a backend by name; every backend follows the `Scorer` protocol and returns
`ScoreResult(id, nll, n_tokens)` in input order, over the scored positions of lmforget.encoding.
"""

from __future__ import annotations

from lmforget.scoring.base import (
    SCORE_COLUMNS,
    SCORERS,
    Scorer,
    ScoreResult,
    check_score_path,
    read_scores,
    results_arrays,
    results_frame,
    write_scores,
)
from lmforget.scoring.hf import HFScorer, padding_waste, plan_batches
from lmforget.scoring.vllm import VLLMScorer  # registers "vllm"; vllm itself is imported on use

__all__ = [
    "SCORE_COLUMNS",
    "SCORERS",
    "HFScorer",
    "ScoreResult",
    "Scorer",
    "VLLMScorer",
    "check_score_path",
    "make_scorer",
    "padding_waste",
    "plan_batches",
    "read_scores",
    "results_arrays",
    "results_frame",
    "write_scores",
]

BACKENDS = tuple(SCORERS.names())


def make_scorer(backend: str, model, tokenizer=None, **options) -> Scorer:
    """A scorer by backend name: "hf" takes a loaded (model, tokenizer); "vllm" takes a model path/id."""
    return SCORERS.get(backend)(model, tokenizer=tokenizer, **options)
