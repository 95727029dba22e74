"""Training and scoring precision: fp32 master weights for full fine-tuning, `dtype: auto` as documented,
a separate scoring dtype, and the vLLM engine reused across tasks (a fake vLLM: the real one is GPU-only)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from lmforget.config import FinetuneConfig, ScoreConfig, load_recipe
from lmforget.data.types import TaskExample, TaskSet
from lmforget.models import load_model, resolve_dtype


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory) -> Path:
    """A tiny Llama saved in bfloat16, like the paper's MPT/OLMo checkpoints."""
    model, tok = load_model("tiny:llama", device="cpu", dtype="bfloat16")
    path = tmp_path_factory.mktemp("ckpt") / "bf16"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_auto_dtype_is_bf16_on_cuda_and_fp32_on_cpu_whatever_the_checkpoint(bf16_checkpoint) -> None:
    assert resolve_dtype("auto", "cuda:0") == torch.bfloat16 == resolve_dtype(None, "cuda")
    assert resolve_dtype("auto", "cpu") == torch.float32
    model, _ = load_model(str(bf16_checkpoint), device="cpu", dtype="auto")
    assert model.dtype == torch.float32  # not the checkpoint's bf16
    model, _ = load_model(str(bf16_checkpoint), device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16


def test_a_2e6_adamw_step_changes_a_half_precision_checkpoint(bf16_checkpoint) -> None:
    """At the paper's lr the update rounds away in bf16; the fp32 master weights keep it."""
    from lmforget.finetune import EncodedDataset, encode_task, train

    model, tok = load_model(str(bf16_checkpoint), device="cpu", dtype="bfloat16")  # a half-precision load
    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    task = TaskSet("t", "g", [TaskExample.from_prompt(f"What is {i} plus 1?", str(i + 1)) for i in range(8)], [])
    cfg = FinetuneConfig(lr=2e-6, steps=1, warmup_steps=0, effective_batch=8, batch_size=8, max_length=64,
                         optimizer="adamw_torch")
    items = encode_task(tok, task, cfg.max_length)
    trained = train(model, tok, items, cfg, max_steps=1, progress=False).model
    assert all(p.dtype == torch.float32 for p in trained.parameters())  # upcast before the step
    total = sum(p.numel() for p in trained.parameters())
    moved = sum(int((p.detach() != before[n]).sum()) for n, p in trained.named_parameters())
    assert moved / total > 0.5  # every weight with a gradient moved (measured: 78%; unused embeddings have none)

    # the same step taken on the bf16 weights themselves: nearly every update rounds away
    half, _ = load_model(str(bf16_checkpoint), device="cpu", dtype="bfloat16")
    half.train()
    opt = torch.optim.AdamW(half.parameters(), lr=2e-6, weight_decay=0.0)
    batch = EncodedDataset(items)[0]
    out = half(input_ids=torch.tensor([batch["input_ids"]]), labels=torch.tensor([batch["labels"]]))
    out.loss.backward()
    opt.step()
    changed = sum(int((p.detach().float() != before[n]).sum()) for n, p in half.named_parameters())
    assert changed / total < 0.05  # only weights within ~1e-3 of zero moved (measured: 3%)


def test_scoring_dtype_is_its_own_setting(tiny_llama) -> None:
    from lmforget.collect import score_upstream, scoring_dtype
    from lmforget.data.types import UpstreamExample, UpstreamSet

    model, tok = load_model("tiny:llama", device="cpu", dtype="float32")
    up = UpstreamSet([UpstreamExample(id=str(i), text=f"The river {i} flows into the sea.") for i in range(4)])
    fp32 = score_upstream(model, tok, up, ScoreConfig(), progress=False)
    assert model.dtype == torch.float32  # auto on CPU: fp32, the model untouched
    bf16 = score_upstream(model, tok, up, ScoreConfig(dtype="bfloat16"), progress=False)
    diff = np.abs(fp32["nll"].to_numpy() - bf16["nll"].to_numpy())
    assert 0 < diff.max() < 0.1  # bf16 scoring really ran, and agrees roughly
    recipe = load_recipe("tiny")
    assert scoring_dtype(recipe) == "float32"
    assert scoring_dtype(recipe, recipe.executor.model_copy(update={"kind": "ray", "gpus_per_task": 1})) == "bfloat16"
    assert scoring_dtype(load_recipe("tiny", ["score.dtype=float16"])) == "float16"


class _FakeLLM:
    """Records what lmforget asks of a vLLM engine; every prompt token gets log-probability -0.5."""

    built: list = []
    calls: list = []

    def __init__(self, model, **kw) -> None:
        _FakeLLM.built.append((model, kw))

    def sleep(self, level):
        _FakeLLM.calls.append(("sleep", level))

    def wake_up(self):
        _FakeLLM.calls.append(("wake_up",))

    def collective_rpc(self, method):
        _FakeLLM.calls.append(("rpc", method))

    def reset_prefix_cache(self):
        _FakeLLM.calls.append(("reset_prefix_cache",))

    def generate(self, prompts, params, use_tqdm=True):
        _FakeLLM.calls.append(("generate", len(prompts)))
        lp = types.SimpleNamespace(logprob=-0.5)
        return [types.SimpleNamespace(prompt_logprobs=[None] + [{t: lp} for t in p["ids"][1:]]) for p in prompts]


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM = _FakeLLM
    vllm.SamplingParams = lambda **kw: kw
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: {"ids": prompt_token_ids}
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    _FakeLLM.built, _FakeLLM.calls = [], []
    from lmforget.scoring import vllm as backend

    yield backend
    backend._ENGINE.clear()


def test_one_vllm_engine_per_process_reloaded_between_tasks(fake_vllm, tmp_path, monkeypatch) -> None:
    """Base + 2 tasks of the tiny recipe: one engine, asleep while training, weights reloaded, models
    moved off the accelerator before the engine runs."""
    import lmforget.collect as collect_mod

    released = []
    real_release = fake_vllm.release_training_memory

    def release(model):
        real_release(model)
        released.append(next(model.parameters()).device.type)
        _FakeLLM.calls.append(("released",))

    monkeypatch.setattr(fake_vllm, "release_training_memory", release)
    recipe = load_recipe("tiny", ["score.backend=vllm"])
    upstream, tasks = collect_mod.load_inputs(recipe)
    base = collect_mod.score_base(recipe, upstream)
    for task in tasks[:2]:
        scores, _ = collect_mod.finetune_and_score(recipe, upstream, task)
        np.testing.assert_allclose(scores["nll"].dropna(), 0.5)  # the engine's numbers, averaged per example
    assert len(_FakeLLM.built) == 1 and _FakeLLM.built[0][1]["enable_sleep_mode"] is True
    assert _FakeLLM.built[0][0] == str(fake_vllm.engine_dir())
    names = [c[0] for c in _FakeLLM.calls]
    assert names == ["released", "generate"] + ["sleep", "released", "wake_up", "rpc", "reset_prefix_cache",
                                                "generate"] * 2
    assert released == ["cpu"] * 3 and len(base) == len(upstream)
    assert (fake_vllm.engine_dir() / "config.json").is_file()
