"""Token ids and scored positions: the one place that decides which tokens count.

PROTOCOL.md section 2: for raw text every token but the first is scored; for chats only the
final assistant answer is scored (up to, not including, the end-of-turn/EOS). Fine-tuning uses
the very same positions as its loss mask (answer-only loss), so scoring and training agree.
Long inputs keep their END (left truncation), as in the paper's recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from lmforget.data.types import Message, TaskExample, UpstreamExample
from lmforget.errors import LmforgetError

# Tulu/open-instruct style template, used when a tokenizer ships none (base models, tiny models).
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '\n' }}"
    "{% else %}{{ '<|assistant|>\n' + message['content'] + eos_token + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Encoded:
    """Token ids and, per position t, whether token t is scored (predicted from ids[:t])."""

    input_ids: list[int]
    scored: list[bool]

    @property
    def n_scored(self) -> int:
        return sum(self.scored)

    def labels(self) -> list[int]:
        """Causal-LM labels: the token where scored, -100 (ignored) elsewhere."""
        return [t if s else -100 for t, s in zip(self.input_ids, self.scored)]


def ensure_chat_template(tokenizer) -> None:
    """Give a tokenizer without a chat template the Tulu-style default (and a pad token).

    For tokenizers lmforget loads itself (`lmforget.models`); rendering never changes a caller's tokenizer."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def _keep_end(ids: list[int], scored: list[bool], max_length: int | None) -> Encoded:
    if max_length is not None and len(ids) > max_length:
        ids, scored = ids[-max_length:], scored[-max_length:]
    if scored:
        scored = [False] + list(scored[1:])  # position 0 has no context and is never scored
    return Encoded(list(ids), list(scored))


def encode_text(tokenizer, text: str, max_length: int | None = None) -> Encoded:
    """Raw text: the tokenizer's own special tokens at the start, no trailing EOS; all but the first scored."""
    ids = list(tokenizer(text)["input_ids"])
    eos = tokenizer.eos_token_id
    if len(ids) > 1 and eos is not None and ids[-1] == eos and not text.endswith(tokenizer.eos_token or "\0"):
        ids = ids[:-1]
    return _keep_end(ids, [True] * len(ids), max_length)


def render_chat(tokenizer, messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
    """The chat as text, with the tokenizer's template or, when it has none, the Tulu-style default
    (passed per call: the caller's tokenizer is not modified)."""
    template = None if getattr(tokenizer, "chat_template", None) else DEFAULT_CHAT_TEMPLATE
    return tokenizer.apply_chat_template(
        [m.as_dict() for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt,
        chat_template=template,
    )


def encode_chat(tokenizer, messages: Sequence[Message], max_length: int | None = None) -> Encoded:
    """Chat: render with the chat template; score the tokens of the final assistant answer only."""
    if not messages or messages[-1].role != "assistant":
        raise LmforgetError("a chat to score must end with an assistant message")
    prefix = render_chat(tokenizer, messages[:-1], add_generation_prompt=True)
    full = render_chat(tokenizer, messages)
    if not full.startswith(prefix):
        raise LmforgetError(
            "the tokenizer's chat template does not render the conversation as prompt + answer; "
            "cannot locate the answer tokens (set a simpler chat template)"
        )
    answer = messages[-1].content
    start = full.find(answer.strip(), len(prefix)) if answer.strip() else -1
    if start < 0:
        start, end = len(prefix), len(prefix)  # empty or rewritten answer: nothing scored
    else:
        end = start + len(answer.strip())
    if not getattr(tokenizer, "is_fast", False):
        raise LmforgetError("chat scoring needs a fast tokenizer (with offset mapping)")
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    # The answer is the run of tokens from the first to the last one whose characters overlap it.
    # Tokens strictly between are scored even when their offsets are empty: byte-level tokenizers
    # trim offsets, so a lone-space token (GPT-2 "Ġ" before "(", Llama-3/OLMo-2 before digits) is 0 wide.
    overlap = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > s and e > start and s < end]
    scored = [False] * len(ids)
    if overlap:
        scored[overlap[0]:overlap[-1] + 1] = [True] * (overlap[-1] + 1 - overlap[0])
    return _keep_end(ids, scored, max_length)


def encode_upstream(tokenizer, example: UpstreamExample, max_length: int | None = None) -> Encoded:
    if example.messages is not None:
        return encode_chat(tokenizer, example.messages, max_length)
    return encode_text(tokenizer, example.text or "", max_length)


def encode_task_example(tokenizer, example: TaskExample, max_length: int | None = None) -> Encoded:
    return encode_chat(tokenizer, example.messages, max_length)


def generation_prompt(tokenizer, messages: Sequence[Message], max_length: int | None = None) -> list[int]:
    """Token ids of the prompt for greedy generation: everything before the final answer."""
    context = messages[:-1] if messages and messages[-1].role == "assistant" else messages
    text = render_chat(tokenizer, context, add_generation_prompt=True)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids[-max_length:] if max_length else ids
