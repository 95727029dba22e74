"""Dolma shards: JSON lines (often .jsonl.gz) with 'text', 'id' and 'source' (the domain).

Shards are read one line at a time, so a 1% sample of a many-gigabyte corpus streams through
reservoir sampling without being held in memory. Ids are made unique across domains as
'source/id' because Dolma ids are only unique within a source.
"""

from __future__ import annotations

from typing import Iterator

from lmforget.data.registry import records, register_upstream
from lmforget.data.specs import UpstreamSpec
from lmforget.data.types import UpstreamExample, require


@register_upstream("dolma")
def read_upstream(spec: UpstreamSpec) -> Iterator[UpstreamExample]:
    for rec, where in records(spec):
        text = require(rec, "text", where)
        ident = str(require(rec, "id", where, (str, int)))
        source = str(rec.get("source") or "")
        yield UpstreamExample(id=f"{source}/{ident}" if source else ident, text=text, source=source)
