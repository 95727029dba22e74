"""`lmforget collect`, `lmforget matrix`, `lmforget recipes`: steps 1-4 from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lmforget.cli import app, console, print_json


@app.command()
def collect(
    recipe: str = typer.Argument(..., help="A recipe YAML path or a shipped recipe name (see `lmforget recipes`)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted key=value overrides, e.g. finetune.steps=10."),
    out: Path = typer.Option(..., "-o", "--out", help="Run directory (created, or resumed if it exists)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    executor: Optional[str] = typer.Option(None, "--executor", help="local | ray (default: the recipe's "
                                           "executor.kind, local)."),
    address: Optional[str] = typer.Option(None, "--address", help="A running Ray cluster (HOST:PORT, auto); "
                                          "implies --executor ray. Without it a local Ray is started."),
) -> None:
    """Fine-tune on each task and score the upstream set before and after: the forgetting matrix."""
    from lmforget.collect import collect as run_collect
    from lmforget.config import load_recipe
    from lmforget.executor import executor_config

    cfg = load_recipe(recipe, overrides or [])
    exe = executor_config(cfg.executor, executor, address)
    matrix = run_collect(cfg, out, progress=not quiet, log=console.print, executor=exe)
    console.print(f"[green]matrix[/green] {matrix.shape[0]} tasks x {matrix.shape[1]} examples -> {out}/matrix.npz")


@app.command()
def matrix(
    run_dir: Path = typer.Argument(..., help="A run directory made by `lmforget collect`."),
    out: Path = typer.Option(..., "-o", "--out", help="Output .npz matrix file."),
    allow_partial: bool = typer.Option(False, help="Write the finished rows even if some tasks are unfinished."),
) -> None:
    """Assemble the forgetting matrix (.npz) from a run directory."""
    from lmforget.runs import Run

    if out.suffix != ".npz":
        from lmforget.errors import LmforgetError

        raise LmforgetError(f"{out}: the matrix file must end in .npz")
    m = Run.open(run_dir).matrix(require_all=not allow_partial)
    m.save(out)
    console.print(f"{m.shape[0]} tasks x {m.shape[1]} examples ({m.kind}) -> {out}")


@app.command()
def status(
    run_dir: Path = typer.Argument(..., help="A work directory: a run (`lmforget collect`), a replay study "
                                             "(`lmforget replay`) or a similarity analysis (`lmforget similarity "
                                             "-o`), finished or running."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Finished / running / failed / pending units (tasks, replay cells, measures), seconds per unit and an ETA."""
    from lmforget.status import run_status

    st = run_status(run_dir)
    if as_json:
        print_json(st)
        return
    from rich.table import Table

    kind = st["kind"]
    units, labels = {"collect": ("tasks", ["task"]), "replay": ("cells", ["task", "method"]),
                     "similarity": ("measures", ["measure"])}[kind]
    table = Table(*labels, "state", "seconds", "error")
    for t in st[units]:
        secs = t.get("seconds") if t["state"] == "finished" else t.get("running_for")
        table.add_row(*(t[label] for label in labels), t["state"], "" if secs is None else f"{secs:.0f}",
                      t.get("error", ""))
    console.print(table)
    c, eta = st["counts"], st["eta_seconds"]
    running = st["collect_running"] if kind == "collect" else st["driver_running"]
    state = {True: f"{kind} running", False: f"no {kind} running",
             None: f"no progress.json: whether a {kind} runs is unknown"}[running]
    console.print(f"{c['finished']} finished, {c['running']} running, {c['failed']} failed, {c['pending']} pending; "
                  f"{state}; ETA " + ("unknown" if eta is None else _duration(eta)))
    if kind == "replay" and not st["methods"]:
        console.print("no cell has finished and no list of methods was recorded (a study started by an older "
                      "lmforget): its cells show up as they finish")


def _duration(seconds: float) -> str:
    """Seconds as written for a person: `29592 s (8.2 h)`, `750 s (12 min)`, `40 s`."""
    if seconds >= 3600:
        return f"{seconds:.0f} s ({seconds / 3600:.1f} h)"
    return f"{seconds:.0f} s ({seconds / 60:.0f} min)" if seconds >= 60 else f"{seconds:.0f} s"


@app.command()
def migrate(
    dirs: list[Path] = typer.Argument(..., help="Run directories (`lmforget collect`) or replay studies "
                                                "(`lmforget replay`) made by an older lmforget."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Bring manifests to the current identity version without resuming (collect and replay do it on open):
    fingerprints are checked with the old formulas, then replaced, with a note in the manifest."""
    from lmforget.migrate import migrate as migrate_dir

    done = {str(d): migrate_dir(d) for d in dirs}
    if as_json:
        print_json({"migrated": [d for d, m in done.items() if m], "current": [d for d, m in done.items() if not m]})
        return
    for d, m in done.items():
        console.print(f"{d}: {'migrated (see notes in its manifest.json)' if m else 'already current'}")


@app.command()
def recipes(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the shipped recipes."""
    from lmforget.config import recipe_summary, shipped_recipes

    rows = [recipe_summary(name) for name in shipped_recipes()]
    if as_json:
        print_json({"recipes": rows})
        return
    from rich.table import Table

    table = Table("recipe", "model", "description")
    for row in rows:
        table.add_row(row["name"], row["model"], row["description"])
    console.print(table)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-run"), "-o", "--out", help="Run directory (resumed if it exists)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Overrides of the demo recipe, e.g. finetune.steps=6."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """The offline demo: collect the `demo` recipe, then summarise and analyse its forgetting matrix."""
    from lmforget.demo import run_demo

    summary = run_demo(out, overrides or [], progress=not quiet, log=console.print)
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)


def _print_summary(s: dict) -> None:
    from rich.table import Table

    table = Table(title=f"forgetting matrix: {s['shape'][0]} tasks x {s['shape'][1]} upstream examples",
                  show_header=False)
    table.add_row("mean forgetting (NLL increase, nats/token)", f"{s['mean']:+.4f}")
    table.add_row("share of entries forgotten (> 0)", f"{100 * s['share_positive']:.1f}%")
    most, least = s["most_harmful_task"], s["least_harmful_task"]
    table.add_row("most harmful task", f"{most['task']} ({most['mean']:+.4f})")
    table.add_row("least harmful task", f"{least['task']} ({least['mean']:+.4f})")
    r2 = s["r2_by_rank"]
    table.add_row("R^2 of rank-1 / rank-3 approximation",
                  f"{r2[0]:.3f} / {r2[min(2, len(r2) - 1)]:.3f}")
    for key, path in s["outputs"].items():
        table.add_row(key, path)
    table.add_row("wall time", f"{s['seconds']:.0f} s")
    console.print(table)
