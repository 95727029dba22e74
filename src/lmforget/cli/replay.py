"""`lmforget replay` (the replay study) and `lmforget replay-set` (replay data for your own trainer)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lmforget.cli import app, console, print_json


@app.command()
def replay(
    recipe: str = typer.Argument(..., help="A recipe with a 'replay:' section (e.g. replay-demo, replay-tiny); "
                                 "model, data, fine-tuning and scoring come from its run."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted key=value overrides, e.g. replay.rate=0.125."),
    out: Path = typer.Option(..., "-o", "--out", help="Study directory (created, or resumed if it exists)."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated methods (default: the recipe's), "
                                          "e.g. none,random,oracle,offline-mf,online-mf,oracle:top."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print results.json on stdout."),
    executor: Optional[str] = typer.Option(None, "--executor", help="local | ray: one unit per task x method cell "
                                           "(default: the recipe's executor.kind)."),
    address: Optional[str] = typer.Option(None, "--address", help="A running Ray cluster; implies --executor ray."),
    report_only: bool = typer.Option(False, "--report-only", help="Run nothing: write results.json, report.md and "
                                     "figure.png from the tasks whose cells have all finished (an interim report "
                                     "while the study runs)."),
) -> None:
    """Fine-tune each test task with each replay method; compare forgetting on never-replayed examples."""
    from lmforget.executor import executor_config
    from lmforget.replay.study import load_study_recipe, run_study

    cfg = load_study_recipe(recipe, overrides or [])
    results = run_study(cfg, out, methods, progress=not quiet, log=console.print,
                        executor=executor_config(cfg.executor, executor, address), report_only=report_only)
    if as_json:
        print_json(results)
        return
    from rich.table import Table

    table = Table("method", "held-out NLL increase", "vs none", "vs random", "t-test p", "Wilcoxon p",
                  title=f"replay study: {len(results['tasks'])} tasks, {results['n_heldout']} held-out examples"
                  + ("" if results.get("complete", True) else f" (interim: {len(results['tasks'])} of "
                                                              f"{results['n_test_tasks']} test tasks complete)"))
    for name, m in results["methods"].items():
        test = m.get("vs_random", {})
        pct = lambda v: "" if v is None else f"{100 * v:+.1f}%"  # noqa: E731
        fmt_p = lambda v: "" if v is None or v != v else f"{v:.3g}"  # noqa: E731
        table.add_row(name, f"{m['mean_increase']:+.4f}", pct(m.get("reduction_vs_none")),
                      pct(m.get("reduction_vs_random")), fmt_p(test.get("t_p")), fmt_p(test.get("wilcoxon_p")))
    console.print(table)
    console.print(f"report: {out / 'report.md'}  figure: {out / 'figure.png'}  numbers: {out / 'results.json'}")


@app.command("replay-set")
def replay_set(
    matrix: Path = typer.Argument(..., help="Forgetting matrix of earlier tasks (.npz)."),
    probe: Path = typer.Option(..., "--probe", help="Probe file id,forgetting (from `lmforget probe`): measured "
                               "forgetting of a few upstream examples after fine-tuning on the new task."),
    upstream: str = typer.Option(..., "--upstream", help="Upstream data: a records JSONL file (id + text or "
                                 "messages), or FORMAT:PATH for another lmforget.data format."),
    budget: int = typer.Option(..., "--budget", help="How many examples to replay."),
    out: Path = typer.Option(..., "-o", "--out", help="Output JSONL (text or messages, id, score)."),
    method: str = typer.Option("lowrank", "--method", help="Completer that predicts the new task's row (the "
                               "default is `forecast`'s: the same probe gives the same row)."),
    strategy: str = typer.Option("softmax", "--strategy", help="random, softmax, top or mir."),
    temperature: float = typer.Option(0.1, "--temperature", help="Softmax temperature."),
    group: int = typer.Option(30, "--group", help="MIR group size."),
    heldout: int = typer.Option(0, "--heldout", help="Keep this many examples out (the study's held-out draw)."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as JSON on stdout."),
) -> None:
    """Choose replay examples for a new task from a few probed entries; write them as JSONL."""
    from lmforget.replay.replay_set import build_replay_set, check_output, write_replay_set

    check_output(out)
    chosen = build_replay_set(matrix, probe, upstream, budget, method=method, strategy=strategy,
                              temperature=temperature, group=group, heldout=heldout, seed=seed)
    write_replay_set(chosen, out)
    summary = {**chosen.summary(), "out": str(out)}
    if as_json:
        print_json(summary)
        return
    console.print(f"{summary['n']} replay examples (pool {summary['pool']}, {summary['probes']} probes, "
                  f"{method} + {strategy}; mean predicted forgetting {summary['mean_score']:+.4f}) -> {out}")
