"""`lmforget probe`: measure what your fine-tuned model forgot on a few upstream examples."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lmforget.cli import app, console, print_json


@app.command()
def probe(
    base: str = typer.Option(..., "--base", help="The model you started from (hub id, directory, .gguf, tiny:<arch>)."),
    model: str = typer.Option(..., "--model", "-m", help="Your fine-tuned model (a directory or hub id)."),
    upstream: str = typer.Option(..., "--upstream", help="Upstream data: a records JSONL file (id + text or "
                                 "messages; e.g. RUN_DIR/data/upstream.jsonl), or FORMAT:PATH."),
    out: Path = typer.Option(..., "-o", "--out", help="Output probe file (.csv): id, forgetting, ..."),
    k: int = typer.Option(30, "-k", help="How many upstream examples to score."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draw of the k examples."),
    matrix: Optional[Path] = typer.Option(None, "--matrix", help="Draw only among this matrix's columns, and "
                                          "score with its max length by default."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=2, help="Keep the last N tokens "
                                             "(default: the matrix's scorer setting, else 1024)."),
    token_budget: int = typer.Option(16384, "--token-budget", min=1, help="Padded tokens per forward pass."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Examples per forward pass, at most."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, bfloat16, float16 or auto."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the models' own code."),
    model_seed: int = typer.Option(0, "--model-seed", help="Seed of a tiny:<arch> random base model."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Score k seeded upstream examples under the base and the fine-tuned model; write id,forgetting."""
    import numpy as np

    from lmforget.data import load_upstream_arg
    from lmforget.errors import LmforgetError
    from lmforget.probe import measure_probe, write_probe

    if out.suffix != ".csv":
        raise LmforgetError(f"{out}: the probe file is CSV; name it *.csv")
    columns = None
    if matrix is not None:
        from lmforget.matrix import ForgettingMatrix

        fm = ForgettingMatrix.load(matrix)
        if fm.kind != "logppl":
            raise LmforgetError(f"{matrix}: a probe measures NLL increase; this matrix is {fm.kind}")
        columns = fm.examples.tolist()
        if max_length is None:
            max_length = (fm.meta.get("scorer") or {}).get("max_length")
    data = load_upstream_arg(upstream)
    result = measure_probe(base, model, data, k, seed, columns=columns, max_length=max_length or 1024,
                           token_budget=token_budget, batch_size=batch_size, device=device, dtype=dtype,
                           trust_remote_code=trust_remote_code, model_seed=model_seed, progress=not quiet)
    write_probe(result, out)
    summary = {"out": str(out), "n": len(result.ids), "dropped_undefined": k - len(result.ids),
               "mean_forgetting": float(np.mean(result.forgetting)),
               "share_positive": float(np.mean(result.forgetting > 0))}
    if as_json:
        print_json(summary)
        return
    console.print(f"{summary['n']} probe examples, mean forgetting {summary['mean_forgetting']:+.4f} nats/token, "
                  f"{100 * summary['share_positive']:.0f}% forgotten -> {out}")
