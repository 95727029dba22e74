"""Score a data file with a model and write the per-example score table (`lmforget score`)."""

from __future__ import annotations

import os
from pathlib import Path

from lmforget.errors import LmforgetError
from lmforget.scoring.base import check_score_path, write_scores


def score_file(
    model: str,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    max_length: int | None = None,
    token_budget: int = 16384,
    batch_size: int = 64,
    padding: str = "right",
    dtype: str | None = None,
    device: str | None = None,
    backend: str = "hf",
    trust_remote_code: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Load `model`, score every record of `data` (id + text or messages), write `out` atomically.

    All inputs are checked before the model is loaded, and nothing is written unless scoring finished.
    Returns a small summary (rows, scored tokens, mean NLL, output path).
    """
    import numpy as np

    from lmforget.data import load_upstream
    from lmforget.scoring import make_scorer, results_arrays

    out = check_score_path(out)
    data = Path(data)
    if not data.exists():
        raise LmforgetError(f"--data {data}: no such file")
    if padding not in ("left", "right"):
        raise LmforgetError(f"--padding must be 'left' or 'right', not {padding!r}")
    upstream = load_upstream({"format": "records", "path": str(data)})
    options = dict(max_length=max_length)
    if backend == "hf":
        from lmforget.models import load_model

        lm, tok = load_model(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code, seed=seed)
        options.update(token_budget=token_budget, batch_size=batch_size, padding=padding, progress=progress)
        scorer = make_scorer("hf", lm, tok, **options)
    else:
        scorer = make_scorer(backend, model, None, dtype=dtype, trust_remote_code=trust_remote_code,
                             seed=seed, **options)
    results = scorer.score(upstream.examples)
    write_scores(results, out)
    nll, n = results_arrays(results)
    defined = n > 0
    return {
        "out": str(out),
        "rows": len(results),
        "scored_tokens": int(n.sum()),
        "undefined": int((~defined).sum()),
        "mean_nll": float(np.mean(nll[defined])) if defined.any() else float("nan"),
    }
