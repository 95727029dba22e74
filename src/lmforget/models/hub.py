"""Loading with transformers from a local model directory or a hub id (the local HF cache first), and the
tokenizer rules every model shares: a pad token and a chat template."""

from __future__ import annotations

import contextlib
import logging
import os

from lmforget.encoding import ensure_chat_template
from lmforget.errors import LmforgetError
from lmforget.models.tiny import PAD


def finish_tokenizer(tokenizer):
    ensure_chat_template(tokenizer)
    if tokenizer.pad_token_id is None:  # neither pad nor eos: add one so batches can be padded
        tokenizer.add_special_tokens({"pad_token": PAD})
    return tokenizer


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


@contextlib.contextmanager
def _quiet_hub():
    """Silence huggingface_hub's per-retry warnings: a failure ends in one error line, not a dozen."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def pretrained(cls, kind: str, target: str, spec: str, **kwargs):
    """`cls.from_pretrained` for a directory or a hub id; the local HF cache is tried before the network."""
    if kind == "dir":
        try:
            return cls.from_pretrained(target, **kwargs)
        except (OSError, ValueError) as exc:
            raise LmforgetError(f"cannot load model from {spec}: {_first_line(exc)}") from None
    try:
        return cls.from_pretrained(target, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        first = exc
    if os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("", "0", "false", "no"):
        raise LmforgetError(f"model not found: {spec} (not in the local Hugging Face cache and HF_HUB_OFFLINE is set)")
    try:
        with _quiet_hub():
            return cls.from_pretrained(target, **kwargs)
    except (OSError, ValueError) as exc:
        raise LmforgetError(f"model not found: {spec} ({_first_line(exc) or _first_line(first)})") from None


@contextlib.contextmanager
def no_hf_progress_bars():
    """transformers' progress bars off while loading, restored after (the switch is process-wide)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
