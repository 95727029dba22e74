"""The HF scorer agrees with a plain transformers computation, whatever the batching and padding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lmforget.data.types import Message, UpstreamExample
from lmforget.encoding import encode_upstream
from lmforget.errors import LmforgetError
from lmforget.models import TINY_ARCHS
from lmforget.scoring import HFScorer, make_scorer, padding_waste, plan_batches, results_frame

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Wikipedia is a free online encyclopedia written by volunteers. " * 6,
    "Hi",
    "A",  # one token: undefined score
    "In 1905 the scientist published four papers that changed physics forever.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 20 50 100 1000 2024.",
]
CHATS = [
    (("user", "What is the capital of France?"), ("assistant", "Paris.")),
    (("system", "Be brief."), ("user", "Name a colour. " * 4), ("assistant", "Blue, like the ocean and the sky.")),
    (("user", "Say nothing."), ("assistant", "")),  # empty answer: undefined score
    (("user", "Summarize the article."), ("assistant", "It is short."), ("user", "Shorter!"),
     ("assistant", "Short.")),
]


def _examples() -> list[UpstreamExample]:
    out = [UpstreamExample(f"text{i}", text=t, source="raw") for i, t in enumerate(TEXTS)]
    for i, turns in enumerate(CHATS):
        out.append(UpstreamExample(f"chat{i}", messages=tuple(Message(r, c) for r, c in turns), source="chat"))
    return out


def reference_nll(model, tokenizer, example: UpstreamExample, max_length: int | None = None) -> tuple[float, int]:
    """One example, no padding, the model's own logits: mean -log p over the scored positions."""
    enc = encode_upstream(tokenizer, example, max_length)
    if enc.n_scored == 0:
        return math.nan, 0
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        logp = model(input_ids=ids).logits.float().log_softmax(-1)[0]
    total = 0.0
    for t, keep in enumerate(enc.scored):
        if keep:
            total -= float(logp[t - 1, enc.input_ids[t]])
    return total / enc.n_scored, enc.n_scored


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_scores_match_reference_for_every_batching_and_padding(load_tiny, arch: str) -> None:
    model, tok = load_tiny(arch)
    examples = _examples()
    ref = [reference_nll(model, tok, ex) for ex in examples]
    assert any(n == 0 for _, n in ref) and sum(n > 0 for _, n in ref) >= 8
    for padding in ("left", "right"):
        for batch_size, budget in ((1, 16384), (64, 16384), (3, 40)):
            got = HFScorer(model, tok, padding=padding, batch_size=batch_size, token_budget=budget,
                           progress=False).score(examples)
            assert [r.id for r in got] == [ex.id for ex in examples]  # input order
            for r, (nll, n) in zip(got, ref, strict=True):
                assert r.n_tokens == n
                if n == 0:
                    assert math.isnan(r.nll)
                else:
                    assert abs(r.nll - nll) < 1e-4, (arch, padding, batch_size, r.id, r.nll, nll)


def test_truncation_scores_the_kept_end(tiny_llama) -> None:
    model, tok = tiny_llama
    examples = _examples()
    got = HFScorer(model, tok, max_length=12, batch_size=8, progress=False).score(examples)
    for r, ex in zip(got, examples, strict=True):
        nll, n = reference_nll(model, tok, ex, max_length=12)
        assert r.n_tokens == n <= 11
        assert (math.isnan(r.nll) and n == 0) or abs(r.nll - nll) < 1e-4


def test_chunked_output_layer_and_full_logits_fallback_agree(tiny_llama) -> None:
    model, tok = tiny_llama
    examples = _examples()
    base = HFScorer(model, tok, progress=False).score(examples)
    tiny_chunks = HFScorer(model, tok, logits_budget_mb=0, progress=False)  # one position per chunk
    assert [r.n_tokens for r in tiny_chunks.score(examples)] == [r.n_tokens for r in base]
    np.testing.assert_allclose([r.nll for r in tiny_chunks.score(examples)], [r.nll for r in base], atol=1e-5)
    # a model that post-processes its logits is scored through its full forward
    model.config.final_logit_softcapping = 30.0
    try:
        fallback = HFScorer(model, tok, padding="left", batch_size=4, progress=False).score(examples)
    finally:
        del model.config.final_logit_softcapping
    np.testing.assert_allclose([r.nll for r in fallback], [r.nll for r in base], atol=1e-5)


def test_scoring_restores_training_mode(load_tiny) -> None:
    model, tok = load_tiny("gpt2")
    model.train()
    try:
        HFScorer(model, tok, progress=False).score(_examples()[:2])
        assert model.training
    finally:
        model.eval()


def test_plan_batches_sorts_longest_first_and_respects_budget() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 300, size=500)
    batches = plan_batches(lengths, token_budget=2048, batch_size=16)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))  # every example exactly once
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)
    for b in batches:
        assert len(b) <= 16 and (len(b) == 1 or len(b) * lengths[b].max() <= 2048)
    # sorted batching wastes far less padding than input-order batches of the same size
    fixed = [np.arange(i, min(i + 16, 500)) for i in range(0, 500, 16)]
    assert padding_waste(lengths, batches) < 0.05 < padding_waste(lengths, fixed)
    # an example longer than the budget still runs, alone
    assert [len(b) for b in plan_batches([5000, 10, 10], token_budget=100, batch_size=8)] == [1, 2]


def test_bad_settings_and_frame(tiny_llama) -> None:
    model, tok = tiny_llama
    with pytest.raises(LmforgetError):
        HFScorer(model, tok, padding="middle")
    with pytest.raises(LmforgetError):
        HFScorer(model, tok, token_budget=0)
    with pytest.raises(LmforgetError):
        make_scorer("onnx", model, tok)
    frame = results_frame(HFScorer(model, tok, progress=False).score(_examples()[:4]))
    assert list(frame.columns) == ["id", "nll", "n_tokens"] and frame["n_tokens"].dtype == np.int64


def test_vllm_backend_without_vllm_is_a_clear_error() -> None:
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(LmforgetError, match="vllm"):
            make_scorer("vllm", "some/model")
    else:  # pragma: no cover - GPU machines
        pytest.skip("vllm is installed")


def test_lora_wrapped_model_scores_like_its_merged_weights() -> None:
    peft = pytest.importorskip("peft")
    from lmforget.models import load_model

    model, tok = load_model("tiny:llama", device="cpu", seed=3)
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    examples = _examples()
    got = HFScorer(wrapped, tok, padding="left", batch_size=5, progress=False).score(examples)
    merged = wrapped.merge_and_unload()
    ref = [reference_nll(merged, tok, ex) for ex in examples]
    plain, _ = load_model("tiny:llama", device="cpu", seed=3)
    base = [reference_nll(plain, tok, ex)[0] for ex in examples]
    assert max(abs(a - b) for a, b in zip(base, (r[0] for r in ref), strict=True) if a == a) > 1e-3  # LoRA matters
    for r, (nll, n) in zip(got, ref, strict=True):
        assert r.n_tokens == n and ((n == 0 and math.isnan(r.nll)) or abs(r.nll - nll) < 1e-4)
