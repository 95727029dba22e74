"""The `lmforget` command line: one Typer app; each command parses, calls one library function, prints.

Commands live in small modules by pipeline stage (collect, analyze, predict, replay) and register
themselves on `app`. Human-readable chatter goes to stderr; `--json` output alone goes to stdout.
Bad input (LmforgetError) ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import typer
from rich.console import Console

from lmforget.atomic import _json_default
from lmforget.errors import LmforgetError

app = typer.Typer(
    name="lmforget",
    help="Map, predict and mitigate what a language model forgets when it is fine-tuned.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


COMMAND_MODULES = ("collect", "score", "probe", "data", "analyze", "report", "predict", "replay")


def csv_list(value: str | None) -> list[str]:
    """A comma-separated option's items (blank items dropped)."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def print_json(obj: Any) -> None:
    """The one JSON object a `--json` command prints on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _register() -> None:
    # Import for side effects: each module adds its commands to `app`. A missing module is a bug, not
    # an optional feature, so its ImportError propagates.
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"lmforget.cli.{name}")


_register()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    try:
        rv = app(args=argv, standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except LmforgetError as exc:
        sys.stderr.write(f"lmforget: error: {exc}\n")
        return 2
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        sys.stderr.write(f"lmforget: error: {exc.format_message()} (see --help)\n")
        return 2
    except (click.exceptions.Abort, KeyboardInterrupt):
        sys.stderr.write("lmforget: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
