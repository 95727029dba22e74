"""Pieces both studies' report.py assemble their results/report.md with."""

from __future__ import annotations

from pathlib import Path

from lmforget.atomic import read_json


def read_part(path: Path) -> dict | None:
    """A part's JSON output, or None when the part has not run yet (a corrupt one is an error)."""
    return read_json(path, "study part's output", missing=None)


def included(title: str, md: Path, missing: str) -> list[str]:
    """A part's own Markdown report with `title` for its title and its other headings one level down."""
    if not md.is_file():
        return [f"## {title}", "", missing, ""]
    lines = [("#" + line if line.startswith("#") else line) for line in md.read_text(encoding="utf-8").splitlines()]
    if lines and lines[0].startswith("## "):
        lines[0] = f"## {title}"
    return lines + [""]
