"""Text cuts shared by the adapters and the loader: to n words, characters or tokens, in word-size chunks,
and `slug` (a readable id made from a title or a name)."""

from __future__ import annotations

import re

from lmforget.errors import LmforgetError


def slug(text: str) -> str:
    """A stable, readable id: lower case, runs of non-alphanumerics -> '_'."""
    s = re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")
    return s or "x"


def chunk_words(text: str, size: int) -> list[str]:
    words = text.split()
    return [" ".join(words[i:i + size]) for i in range(0, len(words), size)]


def cut_words(text: str, n: int) -> str:
    """The first n whitespace-separated words, keeping the original spacing up to them."""
    matches = list(re.finditer(r"\S+", text))
    if len(matches) <= n:
        return text
    return text[: matches[n - 1].end()]


def cut_chars(text: str, n: int) -> str:
    """At most n characters, ending at a word boundary when one exists in the second half."""
    if len(text) <= n:
        return text
    head = text[:n]
    space = head.rfind(" ")
    return head[:space] if space > n // 2 else head


def cut_tokens(texts: list[str], n: int, tokenizer) -> list[str]:
    """Each text cut to its first n tokens (no special tokens), as text; needs a tokenizer."""
    if tokenizer is None:
        raise LmforgetError("'max_tokens' needs the model's tokenizer; pass tokenizer= or use max_words")
    out = []
    fast = getattr(tokenizer, "is_fast", False)
    for text in texts:
        if fast:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            out.append(text if len(offsets) <= n else text[: offsets[n - 1][1]])
        else:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            out.append(text if len(ids) <= n else tokenizer.decode(ids[:n]))
    return out
