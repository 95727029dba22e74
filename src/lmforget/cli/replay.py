"""`lmforget replay` (the replay study), `lmforget replay-set` (replay data for your own trainer) and `lmforget
wise-ft` (weight interpolation of a model fine-tuned anywhere): the mitigation commands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lmforget.cli import app, console, csv_list, print_json


@app.command()
def replay(
    recipe: str = typer.Argument(..., help="A recipe with a 'replay:' section (e.g. replay-demo, replay-tiny); "
                                 "model, data, fine-tuning and scoring come from its run."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted key=value overrides, e.g. replay.rate=0.125."),
    out: Path = typer.Option(..., "-o", "--out", help="Study directory (created, or resumed if it exists)."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated methods (default: the recipe's), "
                                          "e.g. none,random,oracle,offline-mf,online-mf,oracle:top; kl- in front "
                                          "trains KL to the base model; +l2-sp@L, +lora, +kl-weight@W, +wise-ft@A "
                                          "add settings (lmforget.replay.methods)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma-separated test tasks to run now (default: all "
                                        "of replay.test_tasks), e.g. those whose rows the run has finished; a "
                                        "later run without it adds the rest."),
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
    from lmforget.replay.study import run_study
    from lmforget.replay.study_setup import load_study_recipe

    cfg = load_study_recipe(recipe, overrides or [])
    results = run_study(cfg, out, methods, progress=not quiet, log=console.print,
                        executor=executor_config(cfg.executor, executor, address), report_only=report_only,
                        tasks=csv_list(tasks) if tasks is not None else None)
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
    strategy: str = typer.Option("softmax", "--strategy", help="Selection strategy (lmforget.replay.selection; an "
                                 "unknown name lists them all)."),
    temperature: float = typer.Option(0.1, "--temperature", help="Softmax temperature."),
    group: int = typer.Option(30, "--group", help="MIR group size."),
    heldout: int = typer.Option(0, "--heldout", help="Keep this many examples out (the study's held-out draw)."),
    seed: int = typer.Option(0, "--seed"),
    objective: str = typer.Option("nll", "--objective", help="nll: the examples, for next-token loss; kl: also "
                                  "OUT's .kl.safetensors with the base model's top-k log-probs at every trained "
                                  "position, for KL replay (lmforget.replay.trainer.KLReplayTrainer)."),
    model: Optional[str] = typer.Option(None, "--model", help="--objective kl: the base model (name or path)."),
    top_k: int = typer.Option(256, "--top-k", help="--objective kl: log-probs kept per position (the rest of "
                              "the mass is one bucket)."),
    max_length: int = typer.Option(1024, "--max-length", help="--objective kl: keep the end of longer examples."),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as JSON on stdout."),
) -> None:
    """Choose replay examples for a new task from a few probed entries; write them as JSONL."""
    from lmforget.errors import LmforgetError
    from lmforget.replay.replay_set import add_kl_targets, build_replay_set, check_output, write_replay_set

    check_output(out)
    if objective not in ("nll", "kl"):
        raise LmforgetError(f"--objective must be nll or kl, not {objective!r}")
    if objective == "kl" and not model:
        raise LmforgetError("--objective kl needs --model: the base model whose distribution replay keeps")
    if top_k < 1:
        raise LmforgetError(f"--top-k must be at least 1 (got {top_k})")
    chosen = build_replay_set(matrix, probe, upstream, budget, method=method, strategy=strategy,
                              temperature=temperature, group=group, heldout=heldout, seed=seed)
    if objective == "kl":
        add_kl_targets(chosen, model, k=top_k, max_length=max_length)
    write_replay_set(chosen, out)
    summary = {**chosen.summary(), "out": str(out)}
    if objective == "kl":
        from lmforget.replay.trainer import targets_path

        summary["kl_targets"] = str(targets_path(out))
    if as_json:
        print_json(summary)
        return
    console.print(f"{summary['n']} replay examples (pool {summary['pool']}, {summary['probes']} probes, "
                  f"{method} + {strategy}; mean predicted forgetting {summary['mean_score']:+.4f}) -> {out}"
                  + (f" + {summary['kl_targets']}" if objective == "kl" else ""))


@app.command("wise-ft")
def wise_ft(
    base: str = typer.Option(..., "--base", help="The model you started from (hub id, directory, tiny:<arch>)."),
    model: str = typer.Option(..., "--model", "-m", help="Your fine-tuned model: a directory or hub id, or a PEFT "
                              "(LoRA) adapter directory, merged into --base first."),
    alpha: float = typer.Option(..., "--alpha", help="Weight of the fine-tuning, in [0, 1]: 0 is --base, 1 is "
                                "--model; study 2 measured 0.25, 0.5 and 0.75."),
    out: Path = typer.Option(..., "-o", "--out", help="New model directory (must not exist)."),
    dtype: str = typer.Option("float32", "--dtype", help="Precision of the interpolation and of the written "
                              "weights: float32, bfloat16 or float16."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the models' own code."),
    model_seed: int = typer.Option(0, "--model-seed", help="Seed of a tiny:<arch> random base model."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """WiSE-FT: write base + alpha (fine-tuned - base) as a model directory, to probe, score or serve."""
    from lmforget.weightspace import wise_ft_checkpoint

    summary = wise_ft_checkpoint(base, model, alpha, out, dtype=dtype, trust_remote_code=trust_remote_code,
                                 model_seed=model_seed)
    if as_json:
        print_json(summary)
        return
    console.print(f"{summary['changed_tensors']} tensors moved {alpha:g} of the way from --base to --model -> {out}")
