"""Chat templates for formatting tasks and chat upstream data, selected by the recipe key `model.chat_template`.

Base models ship no chat template, yet fine-tuning on a task and scoring a chat need one. `auto`
(the default) keeps the tokenizer's own template and gives a tokenizer without one the `tulu`
template; a shipped name or a Jinja file replaces the tokenizer's template. The texts below were
written for lmforget from the formats the model cards document; none needs network.

- `tulu`: open-instruct's format, `<|user|>\\n...\\n<|assistant|>\\n...EOS`.
- `olmo-instruct`: OLMo-Instruct's format (the paper's template for every OLMo setup): the same turns,
  after a leading EOS (`<|endoftext|>`, which OLMo uses as the start of a document).
- `chatml`: `<|im_start|>role\\n...<|im_end|>` (SmolLM2, Qwen and others).
"""

from __future__ import annotations

from pathlib import Path

from lmforget.errors import LmforgetError

_TURNS = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
    "{% else %}{{ '<|assistant|>\\n' + message['content'] + eos_token + '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

TULU = _TURNS
OLMO_INSTRUCT = "{{ eos_token }}" + _TURNS
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TEMPLATES = {"tulu": TULU, "olmo-instruct": OLMO_INSTRUCT, "chatml": CHATML}
DEFAULT = "tulu"  # for a tokenizer without a template when the recipe says `auto`
CHOICES = ("auto", *TEMPLATES)


def check_choice(choice: str) -> str:
    """A valid `model.chat_template` value: auto, a shipped name, or a path to a Jinja file."""
    if choice in CHOICES or choice.endswith((".jinja", ".j2")):
        return choice
    raise ValueError(f"unknown chat template {choice!r}: use one of {', '.join(CHOICES)} or a .jinja file")


def template_text(choice: str) -> str:
    if choice in TEMPLATES:
        return TEMPLATES[choice]
    path = Path(choice).expanduser()
    if not path.is_file():
        raise LmforgetError(f"chat template file not found: {path}")
    return path.read_text(encoding="utf-8")


def use_chat_template(tokenizer, choice: str = "auto") -> None:
    """Give `tokenizer` the recipe's chat template (and a pad token): `auto` keeps its own, if any."""
    if choice != "auto":
        tokenizer.chat_template = template_text(check_choice(choice))
    elif not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = TEMPLATES[DEFAULT]
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
