"""Token ids and scored positions: the one place that decides which tokens count.

docs/protocol.md section 2: for raw text every token but the first is scored; for chats only the
final assistant answer is scored (up to, not including, the end-of-turn/EOS). Fine-tuning's loss
covers the same answer tokens plus the end-of-turn/EOS that closes it (`trained`), so the model
learns to stop: greedy answers end where the gold answer ends, which exact match needs.
Long inputs keep their END (left truncation), as in the paper's recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from lmforget.chat_templates import DEFAULT, TEMPLATES, use_chat_template
from lmforget.data.types import Message, TaskExample, UpstreamExample
from lmforget.errors import LmforgetError

# The template a tokenizer without one gets (Tulu/open-instruct style); see lmforget.chat_templates.
DEFAULT_CHAT_TEMPLATE = TEMPLATES[DEFAULT]


@dataclass(frozen=True)
class Encoded:
    """Token ids and, per position t, whether token t is scored (predicted from ids[:t]).

    `trained` marks the fine-tuning loss positions when they differ from the scored ones (a chat:
    the answer and its end-of-turn/EOS); None means the same as `scored`.
    """

    input_ids: list[int]
    scored: list[bool]
    trained: list[bool] | None = None

    @property
    def n_scored(self) -> int:
        return sum(self.scored)

    @property
    def n_trained(self) -> int:
        """Fine-tuning loss tokens (a chat's answer plus its end-of-turn/EOS)."""
        return sum(self.loss_mask)

    @property
    def loss_mask(self) -> list[bool]:
        return self.scored if self.trained is None else self.trained

    def labels(self) -> list[int]:
        """Causal-LM labels for fine-tuning: the token where trained, -100 (ignored) elsewhere."""
        return [t if s else -100 for t, s in zip(self.input_ids, self.loss_mask, strict=True)]


def ensure_chat_template(tokenizer) -> None:
    """Give a tokenizer without a chat template the Tulu-style default (and a pad token).

    For tokenizers lmforget loads itself (`lmforget.models`); rendering never changes a caller's tokenizer."""
    use_chat_template(tokenizer, "auto")


def _keep_end(ids: list[int], scored: list[bool], max_length: int | None,
              trained: list[bool] | None = None) -> Encoded:
    if max_length is not None and len(ids) > max_length:
        ids, scored = ids[-max_length:], scored[-max_length:]
        trained = None if trained is None else trained[-max_length:]
    if scored:
        scored = [False] + list(scored[1:])  # position 0 has no context and is never scored
        trained = None if trained is None else [False] + list(trained[1:])
    return Encoded(list(ids), list(scored), trained)


def end_of_turn_ids(tokenizer) -> set[int]:
    """Ids of the special tokens that can close a turn (EOS, <|im_end|>, <|eot_id|>, ...)."""
    ids = set(getattr(tokenizer, "all_special_ids", None) or [])
    for i, tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(tok, "special", False):
            ids.add(int(i))
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


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
    trained = None
    if overlap:
        first, last = overlap[0], overlap[-1]
        scored[first:last + 1] = [True] * (last + 1 - first)
        # The loss also covers what closes the answer, up to and including the first end-of-turn
        # token (ChatML's <|im_end|>, Llama-3's <|eot_id|>, Tulu/OLMo's EOS); not what follows it.
        closers = end_of_turn_ids(tokenizer)
        close = next((i for i in range(last + 1, len(ids)) if ids[i] in closers), None)
        if close is not None:
            trained = list(scored)
            trained[last + 1:close + 1] = [True] * (close - last)
    return _keep_end(ids, scored, max_length, trained)


def encode_upstream(tokenizer, example: UpstreamExample, max_length: int | None = None) -> Encoded:
    if example.input_ids is not None:  # exact ids (self-sampled): the continuation only is scored
        ids = list(example.input_ids)
        return _keep_end(ids, [i >= example.prompt_len for i in range(len(ids))], max_length)
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
