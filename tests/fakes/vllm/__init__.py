"""A stand-in for vLLM, used only by the tests: the part of `vllm.LLM` lmforget calls, computed with
transformers on CPU, and enforcing the checks vLLM makes, so that a test fails where vLLM would:

- start-up: `max_model_len` above the length derived from the model's config.json is refused, as
  vLLM's ModelConfig does ("User-specified max_model_len (N) is greater than the derived max_model_len");
- memory: one simulated GPU of `GPU["total"]` bytes. An engine takes `gpu_memory_utilization` of it
  at start-up and needs that much free, as vLLM's start-up check does; an engine still alive (a
  reference kept anywhere) holds its share, so a second one fails ("Free memory on device ...");
- sleep mode: `sleep()` needs `enable_sleep_mode=True`; both levels give the memory back; after level 2
  the weights are gone, so scoring before `collective_rpc("reload_weights")` is refused, and scoring
  while asleep is refused;
- a prompt longer than max_model_len is refused ("The decoder prompt (length N) is longer than the
  maximum model length of M").

`GPU["reload"] = False` makes `collective_rpc("reload_weights")` fail, as on a vLLM without it.
Not a fake that accepts anything: every number it returns is a real log-probability.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from pathlib import Path

GPU = {"total": 80 * 2**30, "used": 0, "reload": True, "engines": 0}
_MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                 "max_sequence_length", "max_seq_length", "seq_len")


def reset() -> None:
    GPU.update(used=0, reload=True, engines=0)


@dataclass
class SamplingParams:
    max_tokens: int = 16
    prompt_logprobs: int | None = None
    temperature: float = 1.0


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None


@dataclass
class RequestOutput:
    prompt_token_ids: list
    prompt_logprobs: list


def _derived_max_len(model: str) -> int:
    cfg = json.loads((Path(model) / "config.json").read_text())
    found = [int(cfg[k]) for k in _MAX_LEN_KEYS if isinstance(cfg.get(k), (int, float))]
    return min(found) if found else 2048


def _release(held: dict) -> None:
    GPU["used"] -= held["bytes"]
    held["bytes"] = 0


class _Core:
    def __init__(self, held: dict) -> None:
        self.held = held

    def shutdown(self) -> None:
        _release(self.held)


class _Engine:
    def __init__(self, held: dict) -> None:
        self.engine_core = _Core(held)


class LLM:
    def __init__(self, model: str, tokenizer: str | None = None, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.9, trust_remote_code: bool = False, seed: int = 0,
                 max_model_len: int | None = None, enable_sleep_mode: bool = False, **kwargs) -> None:
        derived = _derived_max_len(model)
        if max_model_len is not None and max_model_len > derived:
            raise ValueError(f"User-specified max_model_len ({max_model_len}) is greater than the derived "
                             f"max_model_len (max_position_embeddings={derived} in model's config.json).")
        need = int(gpu_memory_utilization * GPU["total"])
        free = GPU["total"] - GPU["used"]
        if free < need:
            raise ValueError(f"Free memory on device ({free / 2**30:.2f}/{GPU['total'] / 2**30:.2f} GiB) on "
                             f"startup is less than desired GPU memory utilization ({gpu_memory_utilization}, "
                             f"{need / 2**30:.2f} GiB).")
        self._held = {"bytes": need}
        GPU["used"] += need
        GPU["engines"] += 1
        weakref.finalize(self, _release, self._held)
        self.llm_engine = _Engine(self._held)
        self.model_dir, self.dtype, self.need = model, dtype, need
        self.max_model_len = max_model_len or derived
        self.sleep_mode, self.asleep, self.weights_valid = enable_sleep_mode, 0, True
        self._load()

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        dtype = torch.float32 if self.dtype in ("auto", "float32") else getattr(torch, self.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=dtype).eval()

    def sleep(self, level: int = 1) -> None:
        if not self.sleep_mode:
            raise ValueError("Sleep mode is not enabled. Please compile vLLM with sleep mode enabled.")
        if level not in (1, 2):
            raise ValueError(f"sleep level {level} is not 1 or 2")
        _release(self._held)
        self.asleep = level
        if level == 2:
            self.weights_valid = False  # level 2 discards the weights; they must be reloaded

    def wake_up(self, tags=None) -> None:
        if not self.asleep:
            return
        free = GPU["total"] - GPU["used"]
        if free < self.need:
            raise RuntimeError(f"CUDA out of memory waking the engine ({free} bytes free, {self.need} needed)")
        GPU["used"] += self.need
        self._held["bytes"] = self.need
        self.asleep = 0

    def collective_rpc(self, method: str, *args, **kwargs):
        if method != "reload_weights" or not GPU["reload"]:
            raise AttributeError(f"'Worker' object has no attribute {method!r}")
        if self.asleep:
            raise RuntimeError("reload_weights on a sleeping engine")
        self._load()
        self.weights_valid = True
        return [None]

    def reset_prefix_cache(self) -> bool:
        return True

    def generate(self, prompts, sampling_params: SamplingParams, use_tqdm: bool = True) -> list[RequestOutput]:
        import torch

        if self.asleep:
            raise RuntimeError("the engine is asleep: call wake_up() first")
        if not self.weights_valid:
            raise RuntimeError("the weights were discarded by sleep(level=2): reload them first")
        outs = []
        for p in prompts:
            ids = list(p["prompt_token_ids"])
            if len(ids) > self.max_model_len:
                raise ValueError(f"The decoder prompt (length {len(ids)}) is longer than the maximum model "
                                 f"length of {self.max_model_len}.")
            with torch.inference_mode():
                logits = self.model(torch.tensor([ids])).logits[0].float()
            lp = torch.log_softmax(logits, dim=-1)
            plp = [None] + [{ids[t]: Logprob(float(lp[t - 1, ids[t]]))} for t in range(1, len(ids))]
            outs.append(RequestOutput(ids, plp))
        return outs
