"""The repository stands alone: its documentation lives in docs/, and what the code cites exists there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".toml", ".txt", ".cfg", ""}


def _repo_files() -> list[Path]:
    """The repository's own text files: tracked ones in a git checkout (build output such as *.egg-info
    is not the repository's), else every file under its top folders."""
    import subprocess

    tops = ("src", "tests", "benchmarks", "docs", "studies", ".ci")
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        files = [ROOT / n for n in listed.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        files = [p for d in tops if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*") if p.is_file()]
        files += [ROOT / n for n in ("README.md", "Makefile", "pyproject.toml")]
    return [p for p in files if p.is_file() and p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts
            and not any(part.endswith(".egg-info") for part in p.parts)]


def test_no_file_refers_to_documents_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    outside = re.compile(r"\.\./shared|PROTOCOL\.md|DESIGN\.md")
    bad = [str(p.relative_to(ROOT)) for p in _repo_files()
           if p.resolve() != this and outside.search(p.read_text(encoding="utf-8", errors="replace"))]
    assert not bad, f"point these at docs/ instead: {bad}"


def test_cited_protocol_sections_exist() -> None:
    protocol = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\d+)\. ", protocol, flags=re.M))
    cited = {(str(p.relative_to(ROOT)), n) for p in _repo_files()
             for n in re.findall(r"docs/protocol\.md,? section (\d+)", p.read_text(encoding="utf-8", errors="replace"))}
    assert cited, "the code cites the protocol by section"
    missing = sorted((f, n) for f, n in cited if n not in sections)
    assert not missing, f"cited sections that docs/protocol.md does not have: {missing}"
    assert (ROOT / "docs" / "architecture.md").is_file()
