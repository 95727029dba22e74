"""Typed records for upstream examples and new tasks: the one shape every loader produces.

An upstream example is either raw text (scored on every token but the first) or a chat
(scored on the final assistant answer only). A task example is a chat or a prompt/completion
pair; prompt/completion pairs are turned into a two-turn chat so that one template and one
answer-span rule serve fine-tuning and scoring alike (docs/protocol.md section 2).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from lmforget.errors import LmforgetError

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def _check_messages(messages: tuple[Message, ...], where: str) -> None:
    if not messages:
        raise LmforgetError(f"{where}: empty 'messages'")
    for m in messages:
        if m.role not in ROLES:
            raise LmforgetError(f"{where}: unknown role {m.role!r} (expected one of {', '.join(ROLES)})")
    if messages[-1].role != "assistant":
        raise LmforgetError(f"{where}: the last message must be the assistant's answer")


def to_messages(raw: Iterable[dict], where: str) -> tuple[Message, ...]:
    """Validate a list of {"role", "content"} dicts (Tulu/OpenAI style) into Messages."""
    try:
        msgs = tuple(Message(str(m["role"]), str(m["content"])) for m in raw)
    except (TypeError, KeyError) as exc:
        raise LmforgetError(f"{where}: each message needs 'role' and 'content' ({exc})") from None
    _check_messages(msgs, where)
    return msgs


def require(rec: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    """rec[key], or a LmforgetError naming the field and the record."""
    if key not in rec or rec[key] is None:
        raise LmforgetError(f"{where}: missing required field {key!r} (has: {', '.join(map(str, rec)) or 'nothing'})")
    value = rec[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise LmforgetError(f"{where}: field {key!r} must be {names}, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class UpstreamExample:
    """One upstream (pre-training or instruction) example whose forgetting is measured.

    Exactly one of ``text`` and ``messages`` is set. ``answer`` is the gold answer used for
    binary (exact-match) forgetting; for chats it defaults to the final assistant turn.

    ``input_ids`` (with ``text`` kept for reading only) fixes the exact tokens: self-sampled examples
    are stored as the ids the model drew, never decoded and re-encoded. The first ``prompt_len`` ids
    are the context; only the rest (the continuation) is scored and trained.
    """

    id: str
    text: str | None = None
    messages: tuple[Message, ...] | None = None
    source: str = ""
    answer: str | None = None
    input_ids: tuple[int, ...] | None = None
    prompt_len: int = 0

    def __post_init__(self) -> None:
        if (self.text is None) == (self.messages is None):
            raise LmforgetError(f"upstream example {self.id!r}: needs exactly one of 'text' or 'messages'")
        if self.messages is not None:
            _check_messages(self.messages, f"upstream example {self.id!r}")
        if self.input_ids is not None:
            if self.messages is not None:
                raise LmforgetError(f"upstream example {self.id!r}: 'input_ids' go with 'text', not 'messages'")
            if not all(isinstance(t, int) and t >= 0 for t in self.input_ids):
                raise LmforgetError(f"upstream example {self.id!r}: 'input_ids' must be non-negative integers")
            if not 1 <= self.prompt_len < len(self.input_ids):
                raise LmforgetError(f"upstream example {self.id!r}: 'prompt_len' must be at least 1 and "
                                    f"leave a continuation ({self.prompt_len} of {len(self.input_ids)} ids)")
        elif self.prompt_len:
            raise LmforgetError(f"upstream example {self.id!r}: 'prompt_len' needs 'input_ids'")

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    @property
    def gold(self) -> str:
        if self.answer is not None:
            return self.answer
        if self.messages is not None:
            return self.messages[-1].content
        raise LmforgetError(f"upstream example {self.id!r}: raw text has no gold answer for exact match")

    def to_json(self) -> dict:
        d: dict = {"id": self.id, "source": self.source}
        if self.text is not None:
            d["text"] = self.text
        else:
            d["messages"] = [m.as_dict() for m in self.messages or ()]
        if self.answer is not None:
            d["answer"] = self.answer
        if self.input_ids is not None:
            d["input_ids"] = list(self.input_ids)
            d["prompt_len"] = self.prompt_len
        return d


@dataclass(frozen=True)
class TaskExample:
    """One training/evaluation example of a new task, always held as a chat."""

    messages: tuple[Message, ...]

    @classmethod
    def from_prompt(cls, prompt: str, completion: str, system: str | None = None) -> "TaskExample":
        msgs = [Message("user", prompt), Message("assistant", completion)]
        if system:
            msgs.insert(0, Message("system", system))
        return cls(tuple(msgs))

    @property
    def prompt(self) -> str:
        return "\n\n".join(m.content for m in self.messages[:-1])

    @property
    def completion(self) -> str:
        return self.messages[-1].content

    def to_json(self) -> dict:
        return {"messages": [m.as_dict() for m in self.messages]}


@dataclass
class TaskSet:
    """A new fine-tuning task: a name (matrix row), a group (flan/tulu/dolly/...), its examples."""

    name: str
    group: str
    train: list[TaskExample]
    eval: list[TaskExample] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # source facts (licence, n_available); not fingerprinted

    def __post_init__(self) -> None:
        if not self.name:
            raise LmforgetError("a task has an empty name")
        if not self.train:
            raise LmforgetError(f"task {self.name!r} has no training examples")


@dataclass
class UpstreamSet:
    """The N upstream examples: the columns of the forgetting matrix, in order."""

    examples: list[UpstreamExample]
    name: str = "upstream"
    stats: dict = field(default_factory=dict)  # records read, skipped by reason, chosen (not fingerprinted)

    def __post_init__(self) -> None:
        if not self.examples:
            raise LmforgetError(f"upstream set {self.name!r} is empty")
        seen: set[str] = set()
        for ex in self.examples:
            if ex.id in seen:
                raise LmforgetError(f"upstream set {self.name!r}: duplicate id {ex.id!r}")
            seen.add(ex.id)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self):
        return iter(self.examples)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.examples]

    @property
    def sources(self) -> list[str]:
        return [e.source for e in self.examples]

    def fingerprint(self) -> str:
        """SHA-256 over ids and content: a run refuses to resume on different data.

        For token-id examples (self-sampled) the ids are the data; their `text` is a decode for reading
        that a tokenizers release may render differently, so it is left out.
        """
        h = hashlib.sha256()
        for ex in self.examples:
            d = ex.to_json()
            if ex.input_ids is not None:
                d.pop("text", None)
            h.update(json.dumps(d, sort_keys=True, ensure_ascii=False).encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()
