"""The scored positions are exactly the tokens PROTOCOL.md section 2 says (what scoring and fine-tuning share)."""

from __future__ import annotations

import pytest

from lmforget.data.types import Message, UpstreamExample
from lmforget.encoding import encode_upstream
from lmforget.models import load_tokenizer

ANSWERS = ["Paris.", "Blue, like the ocean and the sky.", "It is 42 (forty-two)!\nSecond line."]


def _chat(answer: str, system: bool = False) -> UpstreamExample:
    msgs = [Message("user", "What is it?"), Message("assistant", answer)]
    if system:
        msgs.insert(0, Message("system", "You are terse."))
    return UpstreamExample("c", messages=tuple(msgs))


@pytest.mark.parametrize("answer", ANSWERS)
@pytest.mark.parametrize("system", [False, True])
def test_chat_scores_exactly_the_answer_tokens(tiny_tokenizer, answer: str, system: bool) -> None:
    enc = encode_upstream(tiny_tokenizer, _chat(answer, system))
    scored = [t for t, s in zip(enc.input_ids, enc.scored) if s]
    assert tiny_tokenizer.decode(scored).strip() == answer
    # one contiguous span, which ends before the end-of-turn token
    idx = [i for i, s in enumerate(enc.scored) if s]
    assert idx == list(range(idx[0], idx[-1] + 1))
    assert tiny_tokenizer.eos_token_id not in scored
    assert tiny_tokenizer.eos_token_id in enc.input_ids[idx[-1] + 1:]


def test_multi_turn_chat_scores_only_the_final_answer(tiny_tokenizer) -> None:
    ex = UpstreamExample("m", messages=(Message("user", "Hi"), Message("assistant", "Hello again."),
                                        Message("user", "Bye"), Message("assistant", "Goodbye now.")))
    enc = encode_upstream(tiny_tokenizer, ex)
    assert tiny_tokenizer.decode([t for t, s in zip(enc.input_ids, enc.scored) if s]).strip() == "Goodbye now."


def test_raw_text_scores_all_but_the_first_token(tiny_tokenizer) -> None:
    text = "The river flows through the city and into the sea."
    enc = encode_upstream(tiny_tokenizer, UpstreamExample("t", text=text))
    assert tiny_tokenizer.decode(enc.input_ids) == text
    assert enc.scored == [False] + [True] * (len(enc.input_ids) - 1)


def test_truncation_keeps_the_end(tiny_tokenizer) -> None:
    text = " ".join(f"word{i}" for i in range(60))
    full = encode_upstream(tiny_tokenizer, UpstreamExample("t", text=text))
    cut = encode_upstream(tiny_tokenizer, UpstreamExample("t", text=text), max_length=16)
    assert cut.input_ids == full.input_ids[-16:]
    assert cut.scored == [False] + [True] * 15
    chat = _chat("Blue, like the ocean and the sky.")
    full_c = encode_upstream(tiny_tokenizer, chat)
    cut_c = encode_upstream(tiny_tokenizer, chat, max_length=full_c.n_scored + 3)
    assert cut_c.input_ids == full_c.input_ids[-(full_c.n_scored + 3):]
    assert cut_c.n_scored == full_c.n_scored  # the answer survives: it is at the end


@pytest.mark.slow
def test_smollm2_chat_template_scores_the_answer() -> None:
    tok = load_tokenizer("smollm2")
    for answer in ANSWERS:
        enc = encode_upstream(tok, _chat(answer, system=True))
        assert tok.decode([t for t, s in zip(enc.input_ids, enc.scored) if s]).strip() == answer
