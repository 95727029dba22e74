"""Score a whole upstream set with a loaded model, as a recipe's `score:` section says.

The one entry point the pipeline stages share (collection, the replay study): it picks the backend,
keeps the per-example table's columns, and adds greedy exact match for the binary metric.
"""

from __future__ import annotations

import pandas as pd

from lmforget.config import ScoreConfig
from lmforget.data.types import UpstreamSet


def score_upstream(model, tokenizer, upstream: UpstreamSet, cfg: ScoreConfig, progress: bool = True,
                   description: str = "scoring") -> pd.DataFrame:
    """Per-example scores: id, nll, n_tokens (+ correct, output for the binary metric).

    The model is cast to the scoring precision (`cfg.dtype`) first. The vLLM backend loads weights
    from disk, so the model is saved to the process's engine directory and moved off the GPU before the
    (reused) engine runs.
    """
    from lmforget.models import resolve_dtype
    from lmforget.scoring import make_scorer, results_frame

    device = str(next(model.parameters()).device)
    dtype = resolve_dtype(None if cfg.dtype == "auto" else cfg.dtype, device)
    if model.dtype != dtype:
        model = model.to(dtype)
    gens = None
    if cfg.metric == "binary":
        from lmforget.scoring.generate import generate_and_match

        gens = generate_and_match(model, tokenizer, list(upstream), max_new_tokens=cfg.max_new_tokens,
                                  max_length=cfg.max_length, batch_size=cfg.batch_size)
    if cfg.backend == "vllm":
        from lmforget.scoring.vllm import engine_dir, release_training_memory, shared_scorer

        workdir = engine_dir()  # the same directory every time: the process's one engine reloads from it
        model.save_pretrained(workdir)
        tokenizer.save_pretrained(workdir)
        release_training_memory(model)  # the engine never shares the GPU with a model still on it
        scorer = shared_scorer(str(workdir), tokenizer, max_length=cfg.max_length, dtype=str(dtype).split(".")[-1])
    else:
        scorer = make_scorer("hf", model, tokenizer, max_length=cfg.max_length,
                             token_budget=cfg.token_budget, batch_size=cfg.batch_size, progress=progress,
                             description=description)
    frame = results_frame(scorer.score(list(upstream)))
    if gens is not None:
        frame["correct"] = [g.correct for g in gens]
        frame["output"] = [g.output for g in gens]
    return frame
