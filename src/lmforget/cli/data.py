"""`lmforget resources ...` (offline demo resources) and `lmforget data ...` (look at / export data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from lmforget.atomic import write_jsonl
from lmforget.cli import app, console, print_json
from lmforget.errors import LmforgetError

resources_app = typer.Typer(help="Fetch and check the offline demo resources (model, Wikipedia, tasks).",
                            no_args_is_help=True)
data_app = typer.Typer(help="Load upstream and task data from a spec, summarise it, export it.",
                       no_args_is_help=True)
app.add_typer(resources_app, name="resources")
app.add_typer(data_app, name="data")


def _print_status(st: dict[str, dict]) -> None:
    for name, s in st.items():
        mark = "[green]present[/green]" if s["present"] else "[red]missing[/red]"
        console.print(f"{name:10s} {mark}  {s['what']}" + (f"\n           {s['path']}" if s["path"] else
                                                         f"\n           fetch: {s['fetch']}"))


@resources_app.command("status")
def resources_status(as_json: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """Say which offline resources are present and where."""
    from lmforget.resources import status

    st = status()
    if as_json:
        print_json(st)
    else:
        _print_status(st)


@resources_app.command("fetch")
def resources_fetch(
    names: Optional[list[str]] = typer.Argument(None, help="smollm2, wikipedia, bigbench (default: all)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Install/download whatever is missing (idempotent)."""
    from lmforget.resources import fetch

    st = fetch(names or None, log=lambda s: console.print(s))
    if as_json:
        print_json(st)
    else:
        _print_status(st)


def _spec_dict(fmt: str, path: Optional[str], options: list[str]) -> dict[str, Any]:
    from lmforget.config import parse_key_values

    spec: dict[str, Any] = {"format": fmt}
    if path:
        spec["path"] = path
    spec.update(parse_key_values(options, "n=128"))
    return spec


def _check_out(out: Optional[Path]) -> None:
    if out is not None and not out.name.endswith(".jsonl"):
        raise LmforgetError(f"{out}: the export is JSON lines; name it *.jsonl")


@data_app.command("upstream")
def data_upstream(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="records, dolma, pile, tulu, wikipedia"),
    path: Optional[str] = typer.Argument(None, help="file, folder, glob (wikipedia: optional)"),
    options: list[str] = typer.Option([], "--set", "-s", help="spec option key=value (n=128, seed=1, ...)"),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="write the examples as JSONL"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Load an upstream set from a spec; summarise it and optionally export it (records format)."""
    from lmforget.data import load_upstream, upstream_spec

    _check_out(out)
    spec = upstream_spec(_spec_dict(fmt, path, options))
    up = load_upstream(spec)
    if out is not None:
        write_jsonl(out, [ex.to_json() for ex in up])
    sources: dict[str, int] = {}
    for s in up.sources:
        sources[s] = sources.get(s, 0) + 1
    summary = {"n": len(up), "sources": sources, "fingerprint": up.fingerprint(), "counts": up.stats,
               "first": up.examples[0].to_json(), "out": str(out) if out else None}
    if as_json:
        print_json(summary)
    else:
        from lmforget.data.load import describe_counts

        console.print(f"{len(up)} upstream examples; sources: {sources}")
        console.print(describe_counts(up.stats))
        console.print(f"first: {up.examples[0].id}: {(up.examples[0].text or up.examples[0].gold)[:200]!r}")


@data_app.command("tasks")
def data_tasks(
    fmt: str = typer.Argument(..., metavar="FORMAT",
                              help="records, tulu, flan, dolly, mmlu, bbh, truthfulqa, natural-instructions"),
    path: Optional[str] = typer.Argument(None, help="file, folder, glob or archive"),
    options: list[str] = typer.Option([], "--set", "-s", help="spec option key=value (n_train=8, ...)"),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="write the tasks as JSONL (records format)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Load task sets from a spec; list them and optionally export them (records format)."""
    from lmforget.data import load_tasks, task_spec

    _check_out(out)
    tasks = load_tasks(task_spec(_spec_dict(fmt, path, options)))
    if out is not None:
        rows = [{"task": t.name, "group": t.group, "split": split, **ex.to_json()}
                for t in tasks for split, exs in (("train", t.train), ("eval", t.eval)) for ex in exs]
        write_jsonl(out, rows)
    listing = [{"name": t.name, "group": t.group, "n_train": len(t.train), "n_eval": len(t.eval)} for t in tasks]
    if as_json:
        print_json({"tasks": listing, "out": str(out) if out else None})
    else:
        for row in listing:
            console.print(f"{row['group']:22s} {row['name']:50s} train {row['n_train']:6d}  eval {row['n_eval']:5d}")
