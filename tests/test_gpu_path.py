"""The GPU path's contracts, proven on CPU: precision, memory between tasks, launch refusals, Ray options.

- A model trained with bf16 (CPU autocast here, as accelerate installs it on CUDA) computes its full
  forward in fp32 afterwards, like the base, and is freed without waiting for a garbage collection.
- "Before" and "after" go through one code path at one dtype: a fine-tuning that changes nothing
  gives Z exactly 0.
- Full fine-tuning loads fp32 weights; `auto` settings are resolved before fingerprinting, and the
  committed study runs keep their fingerprints.
- Combinations that cannot work under a launcher are refused in one line before any work.
"""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

import pytest
import torch

from lmforget.config import ExecutorConfig, FinetuneConfig, load_recipe
from lmforget.data.types import TaskExample, TaskSet
from lmforget.errors import LmforgetError

ROOT = Path(__file__).resolve().parents[1]


def _train_bf16(load_tiny, lr: float = 0.0):
    import copy

    from lmforget.finetune import encode_task, train

    base, tok = load_tiny("llama")
    model = copy.deepcopy(base)
    task = TaskSet("t", "g", [TaskExample.from_prompt(f"What is {i} plus 1?", str(i + 1)) for i in range(4)], [])
    cfg = FinetuneConfig(lr=lr, steps=1, warmup_steps=0, effective_batch=4, batch_size=4, max_length=64,
                         optimizer="adamw_torch", bf16=True)  # on CPU: accelerate's bf16 autocast
    return train(model, tok, encode_task(tok, task, 64), cfg, max_steps=1, progress=False), base, tok


def test_bf16_training_leaves_no_autocast_on_the_model(load_tiny) -> None:
    """accelerate wraps `forward` in bf16 autocast and Trainer never unwraps it: a fine-tuned model would
    then compute its forward (and `generate`) in bf16 while the base does not."""
    result, base, tok = _train_bf16(load_tiny)
    model = result.model
    assert "forward" not in model.__dict__ and "_original_forward" not in model.__dict__
    ids = torch.tensor([tok("The quick brown fox jumps over the lazy dog.")["input_ids"]])
    with torch.inference_mode():
        after, before = model(ids).logits, base(ids).logits
    assert torch.equal(after, before)  # lr 0: the same weights, so the same fp32 numbers, bit for bit


def test_a_trained_model_is_freed_without_a_garbage_collection(load_tiny) -> None:
    """The autocast wrapper was a reference cycle: up to 14 GB at 7B stayed on the GPU under the next task."""
    result, _, _ = _train_bf16(load_tiny)
    gc.collect()
    gc.disable()
    try:
        ref = weakref.ref(result.model)
        del result
        assert ref() is None
    finally:
        gc.enable()


def _units(recipe):
    from lmforget.collect import finetune_and_score, load_inputs, resolve_recipe, score_base

    recipe = resolve_recipe(recipe, recipe.executor)
    upstream, tasks = load_inputs(recipe, progress=False)
    base = score_base(recipe, upstream)
    after, _ = finetune_and_score(recipe, upstream, tasks[0])
    return base, after


@pytest.mark.parametrize("score_dtype", ["float32", "bfloat16"])
def test_before_and_after_are_scored_alike_so_no_change_gives_z_exactly_0(score_dtype: str, tmp_path: Path) -> None:
    """A bf16 fine-tuning with lr 0 from a recipe asking for bf16 weights: the base and the "fine-tuned"
    model go through collect's units (load, cast, score, greedy generation) and agree bit for bit."""
    qa = [(f"What is {i} plus {i}?", str(2 * i)) for i in range(12)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": q}, {
        "role": "assistant", "content": a}]}) + "\n" for i, (q, a) in enumerate(qa)))
    recipe = load_recipe("tiny", [f"upstream.path={path}", "finetune.lr=0.0", "finetune.steps=1", "finetune.bf16=true",
                                  "model.dtype=bfloat16", f"score.dtype={score_dtype}", "score.metric=binary",
                                  "score.max_new_tokens=6", "tasks.tiny.tasks=[add_numbers]"])
    base, after = _units(recipe)
    assert (after["nll"].to_numpy() - base["nll"].to_numpy() == 0).all()
    assert list(after["output"]) == list(base["output"])


def test_full_fine_tuning_loads_fp32_weights() -> None:
    """Loading bf16 and upcasting would put every master weight on the bf16 grid: an update smaller than
    half a bf16 step then rounds back to the base value in the scoring cast."""
    from lmforget.models import load_recipe_model, training_dtype

    recipe = load_recipe("tiny", ["model.dtype=bfloat16"])
    model, _ = load_recipe_model(recipe, dtype=training_dtype(recipe))
    w = model.get_input_embeddings().weight
    assert w.dtype == torch.float32 and not torch.equal(w, w.bfloat16().float())  # off the bf16 grid
    lora = load_recipe("tiny", ["model.dtype=bfloat16", "finetune.method=lora"])
    assert training_dtype(lora) == "bfloat16"  # LoRA: adapters train on the recipe's frozen base


def test_auto_settings_are_resolved_before_fingerprinting(tmp_path: Path) -> None:
    from lmforget.collect import collect
    from lmforget.runs import Run

    collect(load_recipe("tiny", ["finetune.optimizer=auto", "finetune.bf16=auto",
                                 "finetune.steps=1", "tasks.tiny.tasks=[add_numbers]"]), tmp_path / "r", progress=False)
    ft = Run.open(tmp_path / "r").manifest["recipe"]["finetune"]
    assert (ft["optimizer"], ft["bf16"]) == ("adamw_torch", False)  # this CPU machine: no bitsandbytes, no bf16


def test_auto_optimizer_is_never_a_paged_one(monkeypatch) -> None:
    """Paged 8-bit AdamW leaks its managed buffers task after task; `auto` takes the plain 8-bit one."""
    import types

    from lmforget.finetune import resolve_optimizer

    monkeypatch.setitem(__import__("sys").modules, "bitsandbytes", types.ModuleType("bitsandbytes"))
    assert resolve_optimizer(FinetuneConfig(), cuda=True) == "adamw_bnb_8bit"
    assert resolve_optimizer(FinetuneConfig(), cuda=False) == "adamw_torch"


def test_emulated_bf16_is_not_bf16(monkeypatch) -> None:
    """torch says bf16 is supported on V100/T4 unless asked for native support; vLLM refuses it there."""
    from lmforget.finetune import resolve_bf16
    from lmforget.models import resolve_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_bf16(FinetuneConfig(bf16="auto")) is False
    assert resolve_dtype("auto", "cuda") == torch.float32


@pytest.mark.parametrize("manifest", sorted((ROOT / "studies").glob("*/runs/*/manifest.json")),
                         ids=lambda p: p.parent.name)
def test_committed_runs_keep_their_fingerprints(manifest: Path) -> None:
    """Resolving `auto` settings must not change the fingerprint of a run made with explicit ones."""
    from lmforget.collect import resolve_recipe
    from lmforget.config import recipe_from_dict
    from lmforget.identity import digest, finetune_fingerprint

    data = json.loads(manifest.read_text())
    if "recipe" not in data:
        pytest.skip("not a collect run")
    recipe = recipe_from_dict(data["recipe"])
    resolved = resolve_recipe(recipe, recipe.executor)
    fps = data["fingerprints"]
    assert finetune_fingerprint(resolved.finetune) == fps["finetune"]
    assert digest({"score": resolved.score.science()}) == fps["scorer"]
    assert resolved.score.dtype == fps["score_dtype"]


def _check(overrides: list[str], executor: ExecutorConfig | None = None, cuda: bool = False) -> None:
    from lmforget.launch import check_launch

    recipe = load_recipe("tiny", overrides)
    check_launch(recipe, executor or recipe.executor, cuda=cuda)


@pytest.mark.parametrize("overrides, env, match", [
    (["finetune.deepspeed=package:deepspeed_zero3.json"], {}, "ZeRO-3 with the local executor"),
    ([], {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "ZeRO-3 with the local"),
    ([], {"ACCELERATE_USE_FSDP": "true"}, "FSDP with the local executor"),
])
def test_launches_that_cannot_score_are_refused(overrides, env, match, monkeypatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(LmforgetError, match=match) as err:
        _check(overrides)
    assert "\n" not in str(err.value)
    with pytest.raises(LmforgetError, match=match):  # and where the units train on CUDA
        _check(overrides, cuda=True)


def test_lora_with_zero3_and_gpu_only_hazards_are_refused(monkeypatch) -> None:
    ray = ExecutorConfig(kind="ray", gpus_per_task=4)
    with pytest.raises(LmforgetError, match="LoRA with ZeRO-3"):
        _check(["finetune.method=lora", "finetune.deepspeed=package:deepspeed_zero3.json"], ray, cuda=True)
    _check(["finetune.deepspeed=package:deepspeed_zero3.json"], ray, cuda=True)  # Ray Train gathers: allowed
    with pytest.raises(LmforgetError, match="paged"):
        _check(["finetune.optimizer=paged_adamw_8bit"], cuda=True)
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    with pytest.raises(LmforgetError, match="expandable"):
        _check(["score.backend=vllm"])


@pytest.mark.parametrize("name", ["olmo2-13b", "pythia-12b"])
def test_13b_recipes_are_refused_on_the_local_executor(name: str) -> None:
    """Their gpus_per_task: 4 was silently ignored by the local executor (one device per process); on a
    machine without CUDA (tests/test_recipes.py runs them on a tiny model) it means nothing and passes."""
    import yaml

    shipped = yaml.safe_load((ROOT / "src/lmforget/recipes" / f"{name}.yaml").read_text())
    overrides = [f"finetune.deepspeed={shipped['finetune']['deepspeed']}",
                 f"executor.gpus_per_task={shipped['executor']['gpus_per_task']}"]
    with pytest.raises(LmforgetError, match="needs --executor ray"):
        _check(overrides, cuda=True)
    ray = ExecutorConfig(kind="ray", gpus_per_task=shipped["executor"]["gpus_per_task"])
    _check(overrides, ray, cuda=True)  # with Ray Train: accepted
    _check(["executor.gpus_per_task=4"], cuda=False)


def test_ray_gpu_units_get_a_process_each() -> None:
    """Ray reuses worker processes unless max_calls=1, which only `ray.remote(...)` can set."""
    import ray

    from lmforget.executor import _call_unit, remote_options

    cfg = ExecutorConfig(kind="ray", gpus_per_task=1)
    gpu = ray.remote(**remote_options(cfg, 1))(_call_unit)
    cpu = ray.remote(**remote_options(cfg, 0))(_call_unit)
    assert gpu._default_options["max_calls"] == 1 and gpu._default_options["num_gpus"] == 1
    assert cpu._default_options.get("max_calls") in (None, 0)
    with pytest.raises(ValueError, match="max_calls"):  # why it cannot be an .options() call
        ray.remote(_call_unit).options(max_calls=1)


def test_scoring_units_run_on_the_main_rank_only(monkeypatch) -> None:
    """Under `accelerate launch` only the main rank scores: not one vLLM engine per rank on one GPU."""
    from accelerate import PartialState

    import lmforget.collect as collect_mod

    monkeypatch.setattr(PartialState, "is_main_process", property(lambda self: False))
    recipe = load_recipe("tiny")
    assert collect_mod.score_base(recipe, None) is None


def test_ray_train_rebuilds_the_scoring_model_from_gathered_weights_without_a_copy(load_tiny) -> None:
    """Rank 0 under ZeRO-3: the gathered tensors become the scoring model's parameters themselves (no
    second fp32 copy of a 13B model on the host); buffers such as rotary frequencies are built as usual."""
    from lmforget.raytrain import _model_from_state

    model, tok = load_tiny("llama")
    state = {n: p.detach().clone() for n, p in model.named_parameters()}  # what the per-parameter gather yields
    rebuilt = _model_from_state(model.config, state, trust_remote_code=False)
    assert all(p.data_ptr() == state[n].data_ptr() for n, p in rebuilt.named_parameters() if n in state)
    ids = torch.tensor([tok("The river flows through the city.")["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(rebuilt.eval()(ids).logits, model(ids).logits)
    with pytest.raises(LmforgetError, match="lack"):
        _model_from_state(model.config, {k: v for k, v in state.items() if "layers.0." not in k}, False)


def test_ray_train_refuses_a_node_without_memory_for_its_workers_copies(tmp_path, tiny_tokenizer):
    """Each Ray Train worker loads a full CPU copy first (52 GB at 13B in fp32): refused before loading."""
    from lmforget.models import tiny_config
    from lmforget.raytrain import check_host_memory, parameter_count

    config = tiny_config("llama", tiny_tokenizer)
    config.save_pretrained(tmp_path)  # a local model folder: its size is read from the config alone
    from transformers import AutoModelForCausalLM

    n = parameter_count(str(tmp_path))
    assert n == sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    assert parameter_count("tiny:llama") is None  # nothing to guard
    check_host_memory("m", n, 4, 4, available=4 * 4 * n)  # exactly fits
    with pytest.raises(LmforgetError, match=r"4 worker\(s\) on this node each load allenai/OLMo-2-1124-13B on CPU"):
        check_host_memory("allenai/OLMo-2-1124-13B", 13_700_000_000, 4, 4, available=128 * 1024 ** 3)
    check_host_memory("m", None, 4, 4, available=0)  # unknown size: no refusal
