"""`lmforget report`: the interactive HTML report of a run directory or a matrix file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lmforget.cli import app, console, print_json


@app.command("report")
def report_cmd(
    path: Path = typer.Argument(..., help="A run directory (texts come from its data/, or without it from "
                       "pinned self-sampled token ids), a replay study directory, or a matrix .npz file."),
    out: Path = typer.Option(..., "--out", "-o", help="The HTML file to write, e.g. report.html."),
    upstream: Optional[str] = typer.Option(None, "--upstream", help="Upstream data for the example texts: a records "
                                           "JSONL file, or FORMAT:PATH for another lmforget.data format."),
    predict: Optional[Path] = typer.Option(None, "--predict", help="A `lmforget predict -o` folder (or its "
                                           "results.json) to show; found automatically inside a run directory."),
    replay: Optional[Path] = typer.Option(None, "--replay", help="A `lmforget replay -o` study folder (or its "
                                          "results.json) to show; found automatically inside a run directory."),
    ranks: int = typer.Option(10, "--ranks", help="Largest rank k for the R^2-vs-rank curve."),
    clip: Optional[float] = typer.Option(None, "--clip",
                                         help="Heatmap colour limit (default: 99th percentile of |Z|)."),
    columns: Optional[int] = typer.Option(None, "--columns", help="Analyse a random subsample of this many columns."),
    seed: int = typer.Option(0, "--seed", help="Seed for the column subsample."),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as one JSON object on stdout."),
) -> None:
    """One self-contained HTML file to explore the forgetting matrix in a browser (no server needed)."""
    from lmforget.analysis.html_report import report_from_path

    summary = report_from_path(path, out, upstream=upstream, predict=predict, replay=replay, ranks=ranks,
                               clip=clip, columns=columns, seed=seed)
    if summary.get("warning"):
        typer.echo(f"lmforget: warning: {summary['warning']}", err=True)  # one line, never wrapped
    if as_json:
        print_json(summary)
        return
    if summary.get("texts_from") and summary["texts"]:
        console.print(f"example texts: {summary['texts_from']}", soft_wrap=True)
    console.print(f"report: {out} ({summary['bytes'] / 1e6:.1f} MB; {summary['shape'][0]} tasks x "
                  f"{summary['shape'][1]:,} examples, {summary['texts']:,} with text)")
