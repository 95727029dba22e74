"""Pile-style plain text: {"text": ..., "meta": {"pile_set_name": ...}} per line.

The Pile has no ids, so a document's id is its position in the stream ('pile-<i>'), which is
stable for a given file order. The paper's "first 10,000 documents > 100 characters, cut to
2,000 tokens" is `select: first`, `n: 10000`, `min_chars: 101`, `max_tokens: 2000`.
"""

from __future__ import annotations

from typing import Iterator

from lmforget.data.registry import records, register_upstream
from lmforget.data.specs import UpstreamSpec
from lmforget.data.types import UpstreamExample, require


@register_upstream("pile")
def read_upstream(spec: UpstreamSpec) -> Iterator[UpstreamExample]:
    for i, (rec, where) in enumerate(records(spec)):
        text = require(rec, "text", where)
        meta = rec.get("meta") or {}
        source = str(meta.get("pile_set_name", "")) if isinstance(meta, dict) else ""
        yield UpstreamExample(id=f"pile-{i}", text=text, source=source)
