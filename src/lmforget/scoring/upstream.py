"""Score a whole upstream set with a loaded model, as a recipe's `score:` section says.

The one entry point the pipeline stages share (collection, the replay study): it picks the backend,
keeps the per-example table's columns, and adds greedy exact match for the binary metric.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lmforget.config import ScoreConfig
from lmforget.data.types import UpstreamSet
from lmforget.errors import LmforgetError


def score_upstream(model, tokenizer, upstream: UpstreamSet, cfg: ScoreConfig, progress: bool = True,
                   workdir: Path | None = None, description: str = "scoring") -> pd.DataFrame:
    """Per-example scores: id, nll, n_tokens (+ correct, output for the binary metric).

    The vLLM backend loads weights from disk, so a fine-tuned model is saved to `workdir` first.
    """
    from lmforget.scoring import make_scorer, results_frame

    if cfg.backend == "vllm":
        if workdir is None:
            raise LmforgetError("the vLLM backend needs a working directory to save the model to")
        model.save_pretrained(workdir)
        tokenizer.save_pretrained(workdir)
        scorer = make_scorer("vllm", str(workdir), tokenizer, max_length=cfg.max_length)
    else:
        scorer = make_scorer("hf", model, tokenizer, max_length=cfg.max_length,
                             token_budget=cfg.token_budget, batch_size=cfg.batch_size, progress=progress,
                             description=description)
    frame = results_frame(scorer.score(list(upstream)))
    if cfg.metric == "binary":
        from lmforget.scoring.generate import generate_and_match

        gens = generate_and_match(model, tokenizer, list(upstream), max_new_tokens=cfg.max_new_tokens,
                                  max_length=cfg.max_length, batch_size=cfg.batch_size)
        frame["correct"] = [g.correct for g in gens]
        frame["output"] = [g.output for g in gens]
    return frame
