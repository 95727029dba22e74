"""The scored positions are exactly the tokens docs/protocol.md section 2 says (what scoring and fine-tuning share)."""

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
    scored = [t for t, s in zip(enc.input_ids, enc.scored, strict=True) if s]
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
    scored = [t for t, s in zip(enc.input_ids, enc.scored, strict=True) if s]
    assert tiny_tokenizer.decode(scored).strip() == "Goodbye now."


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
        assert tok.decode([t for t, s in zip(enc.input_ids, enc.scored, strict=True) if s]).strip() == answer
        trained = [t for t, s in zip(enc.input_ids, enc.loss_mask, strict=True) if s]
        assert tok.decode(trained).strip() == answer + "<|im_end|>"


# --- the fine-tuning loss mask: the answer and the end-of-turn token that closes it ----------------

LLAMA3 = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n'"
          " + m['content'] + '<|eot_id|>' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")


def _templated(name: str):
    """A fresh tiny tokenizer with one model family's chat template and its special tokens."""
    from lmforget.chat_templates import TEMPLATES
    from lmforget.models import load_tiny_tokenizer

    tok = load_tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|start_header_id|>",
                                                          "<|end_header_id|>", "<|eot_id|>"]})
    tok.chat_template = LLAMA3 if name == "llama3" else TEMPLATES[name]
    return tok


CLOSERS = {"olmo-instruct": "<|endoftext|>", "chatml": "<|im_end|>", "llama3": "<|eot_id|>"}


@pytest.mark.parametrize("template", sorted(CLOSERS))
@pytest.mark.parametrize("answer", ANSWERS)
def test_loss_covers_the_end_of_turn_while_scoring_stays_the_answer(template: str, answer: str) -> None:
    from lmforget.data.types import TaskExample
    from lmforget.encoding import encode_task_example
    from lmforget.finetune import EncodedDataset

    tok = _templated(template)
    ex = TaskExample.from_prompt("What is it?", answer, system="You are terse.")
    enc = encode_task_example(tok, ex)
    scored = [t for t, s in zip(enc.input_ids, enc.scored, strict=True) if s]
    trained = [t for t, s in zip(enc.input_ids, enc.loss_mask, strict=True) if s]
    assert tok.decode(scored) == answer  # scoring: the answer alone
    assert tok.decode(trained) == answer + CLOSERS[template]  # loss: the answer and what ends the turn
    first, last = enc.loss_mask.index(True), len(enc.loss_mask) - 1 - enc.loss_mask[::-1].index(True)
    assert all(enc.loss_mask[first:last + 1]) and enc.scored[first] and not enc.scored[last]
    assert tok.decode(enc.input_ids[:first]).endswith(("<|assistant|>\n", "assistant\n", "<|end_header_id|>\n\n"))
    labels = EncodedDataset([enc])[0]["labels"]
    assert [t for t in labels if t != -100] == trained
    # the same example cut to its end keeps both masks
    cut = encode_task_example(tok, ex, max_length=len(enc.input_ids) - first + 2)
    assert cut.n_scored == enc.n_scored and sum(cut.loss_mask) == sum(enc.loss_mask)


def test_upstream_chat_scoring_ignores_the_end_of_turn(tiny_tokenizer) -> None:
    enc = encode_upstream(tiny_tokenizer, _chat("Paris."))
    assert sum(enc.loss_mask) == enc.n_scored + 1  # replayed chats are trained to stop, too
    assert tiny_tokenizer.decode([t for t, s in zip(enc.input_ids, enc.scored, strict=True) if s]) == "Paris."
    raw = encode_upstream(tiny_tokenizer, UpstreamExample("t", text="Plain text has no turn to end."))
    assert raw.loss_mask == raw.scored and raw.trained is None


def test_recipe_key_selects_the_template(tmp_path) -> None:
    from lmforget.chat_templates import OLMO_INSTRUCT, use_chat_template
    from lmforget.config import load_recipe
    from lmforget.errors import LmforgetError

    assert load_recipe("olmo-1b", ["upstream.path=x", "tasks.flan.path=x", "tasks.tulu.path=x",
                                   "tasks.dolly.path=x"]).model.chat_template == "olmo-instruct"
    assert load_recipe("tiny").model.chat_template == "auto"
    with pytest.raises(LmforgetError, match="unknown chat template 'olmo'"):
        load_recipe("tiny", ["model.chat_template=olmo"])
    tok = _templated("chatml")
    use_chat_template(tok, "auto")  # keeps a tokenizer's own
    assert "<|im_start|>" in tok.chat_template
    use_chat_template(tok, "olmo-instruct")
    assert tok.chat_template == OLMO_INSTRUCT
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
                                   tokenize=False)
    assert text == "<|endoftext|><|user|>\nHi\n<|assistant|>\nHello.<|endoftext|>\n"
    (tmp_path / "t.jinja").write_text(LLAMA3)
    use_chat_template(tok, str(tmp_path / "t.jinja"))
    assert tok.chat_template == LLAMA3
