"""`lmforget score`: per-example mean NLL of a data file under one model (the score-table contract)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lmforget.cli import app, console, print_json


@app.command()
def score(
    model: str = typer.Option(..., "--model", "-m",
                              help="tiny:<arch>, smollm2, a .gguf file, a model directory or a hub id."),
    data: Path = typer.Option(..., "--data", "-d",
                              help="JSONL/JSON/Parquet/CSV records with 'id' and 'text' or 'messages'."),
    out: Path = typer.Option(..., "--out", "-o", help="Output table (.csv or .parquet): id, nll, n_tokens."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=2,
                                             help="Keep the last N tokens of longer inputs."),
    token_budget: int = typer.Option(16384, "--token-budget", min=1, help="Padded tokens per forward pass."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Examples per forward pass, at most."),
    padding: str = typer.Option("right", "--padding", help="left or right (results do not depend on it)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, bfloat16, float16 or auto "
                                        "(default: bf16 on CUDA, fp32 on CPU)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)."),
    backend: str = typer.Option("hf", "--backend", help="hf (default) or vllm (GPU, optional extra)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the model's own code."),
    seed: int = typer.Option(0, "--seed", help="Seed of tiny random models."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Score every example of DATA with MODEL and write `id, nll, n_tokens` to OUT."""
    from lmforget.scoring.files import score_file

    summary = score_file(
        model, data, out, max_length=max_length, token_budget=token_budget, batch_size=batch_size,
        padding=padding, dtype=dtype, device=device, backend=backend, trust_remote_code=trust_remote_code,
        seed=seed, progress=not quiet,
    )
    if as_json:
        print_json(summary)
    else:
        console.print(
            f"{summary['rows']} examples, {summary['scored_tokens']} scored tokens, "
            f"mean NLL {summary['mean_nll']:.4f} -> {summary['out']}"
        )
