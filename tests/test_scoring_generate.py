"""Greedy generation (batched = one by one) and the normalised exact match of binary forgetting."""

from __future__ import annotations

import pytest

from lmforget.data.types import Message, UpstreamExample
from lmforget.encoding import generation_prompt
from lmforget.errors import LmforgetError
from lmforget.scoring.generate import (
    exact_match,
    first_paragraph,
    generate_and_match,
    greedy_generate,
    normalize_answer,
)


@pytest.mark.parametrize("raw, norm", [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  an   apple, a pear and THE plum.  ", "apple pear and plum"),
    ("Theory of an anthem", "theory of anthem"),  # articles only as whole words
    ("«Yes» — it's (mostly) true...", "yes its mostly true"),
    ("Paris,\tFrance\n", "paris france"),
    ("", ""),
])
def test_normalize_answer(raw: str, norm: str) -> None:
    assert normalize_answer(raw) == norm


def test_first_paragraph_and_exact_match() -> None:
    assert first_paragraph("\n\nParis.\n\nIt is the capital.") == "Paris."
    assert first_paragraph("line one\nline two\n \nrest") == "line one\nline two"
    assert exact_match("The answer: Paris!\n\nBecause...", "answer paris")
    assert not exact_match("Paris, France", "Paris")


def _examples() -> list[UpstreamExample]:
    qs = ["What is the capital of France?", "Name a colour. " * 5, "Hi", "Translate the sentence into German."]
    return [UpstreamExample(f"q{i}", messages=(Message("user", q), Message("assistant", "Paris")))
            for i, q in enumerate(qs)]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_left_padded_generation_equals_one_by_one(load_tiny, arch: str) -> None:
    model, tok = load_tiny(arch)
    prompts = [generation_prompt(tok, ex.messages) for ex in _examples()]
    assert len({len(p) for p in prompts}) > 1  # batches really are padded
    batched = greedy_generate(model, tok, prompts, max_new_tokens=12, batch_size=4, stop_at_blank_line=False)
    single = [greedy_generate(model, tok, [p], max_new_tokens=12, batch_size=1, stop_at_blank_line=False)[0]
              for p in prompts]
    assert batched == single and any(batched)
    # stopping at the first blank line only saves time: the compared text is the same
    stopped = greedy_generate(model, tok, prompts, max_new_tokens=12, batch_size=4)
    assert [first_paragraph(o) for o in stopped] == [first_paragraph(o) for o in batched]


def test_generate_and_match_compares_with_gold(tiny_llama) -> None:
    model, tok = tiny_llama
    examples = _examples()
    results = generate_and_match(model, tok, examples, max_new_tokens=8, batch_size=2)
    assert [r.id for r in results] == [ex.id for ex in examples]
    for r, ex in zip(results, examples, strict=True):
        assert r.answer == first_paragraph(r.output)
        assert r.correct == (normalize_answer(r.answer) == normalize_answer(ex.gold))
    # a gold answer equal to the model's own greedy output is a match
    own = [UpstreamExample(ex.id, messages=ex.messages, answer=r.output)
           for ex, r in zip(examples, results, strict=True)]
    assert all(r.correct for r in generate_and_match(model, tok, own, max_new_tokens=8, batch_size=3))


def test_raw_text_without_answer_is_refused(tiny_llama) -> None:
    model, tok = tiny_llama
    with pytest.raises(LmforgetError, match="gold answer"):
        generate_and_match(model, tok, [UpstreamExample("t", text="Some text")], max_new_tokens=2)


def test_blank_line_stop_looks_only_at_generated_text(tiny_tokenizer) -> None:
    import torch

    from lmforget.scoring.generate import _blank_line_stop

    prompt = tiny_tokenizer("<|assistant|>\n", add_special_tokens=False)["input_ids"]
    rows = ["\n", "Paris", "Paris.\n\nMore", "\n\nParis"]
    ids = [prompt + tiny_tokenizer(r, add_special_tokens=False)["input_ids"] for r in rows]
    width = max(map(len, ids))
    pad = tiny_tokenizer.pad_token_id
    batch = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
    done = _blank_line_stop(tiny_tokenizer, len(prompt))(batch, None)
    assert done.tolist() == [False, False, True, False]
