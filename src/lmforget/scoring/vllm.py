"""vLLM backend of `Scorer`: prompt log-probabilities of the very token ids the HF backend scores.

Optional and GPU-only: `vllm` is imported when a VLLMScorer is built, never at package import.
Encoding (scored positions, truncation) is lmforget.encoding's, done with the HF tokenizer, so both
backends score identical tokens; vLLM only supplies log p(x_t | x_<t) for every prompt position.

A collection scores many models of one architecture, one after another, in the same process (a local
run, or a reused Ray worker). Building a vLLM engine takes minutes, so `shared_scorer` keeps one engine
per process: every model is saved to the same directory (`engine_dir()`), the engine reloads its
weights from there and forgets its prefix cache. While a task trains, `sleep_engine` releases the
engine's GPU memory (weights and KV cache), and `release_training_memory` moves the trained model off
the GPU before the engine wakes: the two never hold the GPU at once.
"""

from __future__ import annotations

import gc
import math
import os
import tempfile
from pathlib import Path
from typing import Sequence

from lmforget.data.types import UpstreamExample
from lmforget.encoding import encode_upstream
from lmforget.errors import LmforgetError
from lmforget.scoring.base import SCORERS, ScoreResult


def _import_vllm():
    try:
        import vllm  # noqa: F401
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
    except ImportError:
        raise LmforgetError(
            "the vLLM scoring backend needs the 'vllm' package on a GPU machine "
            "(pip install 'lmforget[gpu]'), or use the default backend 'hf'"
        ) from None
    return LLM, SamplingParams, TokensPrompt


@SCORERS.register("vllm")
class VLLMScorer:
    """Mean NLL per example computed by vLLM (`SamplingParams(prompt_logprobs=0)`).

    model: a local model directory or hub id vLLM can load (not ``tiny:*``; GGUF via its cache dir).
    tokenizer: the HF tokenizer used for encoding (default: lmforget.models.load_tokenizer(model)).
    """

    def __init__(
        self,
        model: str,
        *,
        tokenizer=None,
        max_length: int | None = None,
        dtype: str | None = "bfloat16",
        gpu_memory_utilization: float = 0.85,
        trust_remote_code: bool = False,
        seed: int = 0,
        llm=None,
        **llm_options,
    ) -> None:
        LLM, SamplingParams, TokensPrompt = _import_vllm()
        if not isinstance(model, str) or model.startswith("tiny:"):
            raise LmforgetError("the vLLM backend takes a model directory or hub id (tiny models: use backend 'hf')")
        if tokenizer is None:
            from lmforget.models import load_tokenizer

            tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code)
        self.model_name = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._prompt = TokensPrompt
        # max_tokens=1: we need no generation, only the log-probability of each prompt token.
        self._params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        self.llm = llm if llm is not None else LLM(
            model=model,
            tokenizer=model,
            dtype=dtype or "auto",
            gpu_memory_utilization=gpu_memory_utilization,
            trust_remote_code=trust_remote_code,
            seed=seed,
            max_model_len=None if max_length is None else max_length + 1,  # room for the 1 sampled token
            **llm_options,
        )

    def settings(self) -> dict:
        return {"backend": "vllm", "max_length": self.max_length, "padding": "none"}

    def score(self, examples: Sequence[UpstreamExample]) -> list[ScoreResult]:
        encoded = [encode_upstream(self.tokenizer, ex, self.max_length) for ex in examples]
        todo = [i for i, e in enumerate(encoded) if e.n_scored > 0]
        prompts = [self._prompt(prompt_token_ids=encoded[i].input_ids) for i in todo]
        outputs = self.llm.generate(prompts, self._params, use_tqdm=True) if prompts else []
        nll = {i: math.nan for i in range(len(examples))}
        for i, out in zip(todo, outputs):
            enc = encoded[i]
            total = 0.0
            # prompt_logprobs[t] is None for t = 0, else {token_id: Logprob} holding x_t's own entry.
            for t, (tok, keep) in enumerate(zip(enc.input_ids, enc.scored)):
                if keep:
                    total -= out.prompt_logprobs[t][tok].logprob
            nll[i] = total / enc.n_scored
        return [ScoreResult(ex.id, nll[i], encoded[i].n_scored) for i, ex in enumerate(examples)]


# ------------------------------------------------------------------ one engine per process
_ENGINE: dict = {}  # {"key": settings, "llm": LLM, "asleep": bool}


def engine_dir() -> Path:
    """This process's directory for the weights the shared engine serves (each model overwrites it)."""
    return Path(tempfile.gettempdir()) / f"lmforget-vllm-{os.getpid()}"


def sleep_engine() -> None:
    """Release the shared engine's GPU memory (weights and KV cache) before a training model is loaded."""
    llm = _ENGINE.get("llm")
    if llm is not None and not _ENGINE["asleep"]:
        llm.sleep(level=2)  # weights are reloaded from engine_dir() on the next scoring anyway
        _ENGINE["asleep"] = True


def release_training_memory(model) -> None:
    """Move a model off the GPU and return the cached blocks, so the engine has the GPU to itself."""
    import torch

    model.to("cpu")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def close_engine() -> None:
    llm = _ENGINE.pop("llm", None)
    _ENGINE.clear()
    if llm is not None:
        del llm
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def shared_scorer(model_dir: str, tokenizer, *, max_length: int | None, dtype: str) -> VLLMScorer:
    """A scorer on this process's one engine: built on first use, later reloaded with the weights now in
    `model_dir` (which must be `engine_dir()` for reuse; another directory builds a new engine)."""
    key = (str(model_dir), max_length, dtype)
    llm = _ENGINE.get("llm")
    if llm is not None and _ENGINE["key"] == key:
        if _ENGINE["asleep"]:
            llm.wake_up()
            _ENGINE["asleep"] = False
        try:
            llm.collective_rpc("reload_weights")  # from model_dir, where the new weights were just saved
        except Exception:  # noqa: BLE001 - a vLLM without in-place reloading: build the engine anew
            close_engine()
            return shared_scorer(model_dir, tokenizer, max_length=max_length, dtype=dtype)
        llm.reset_prefix_cache()  # cached KV blocks belong to the previous weights
        return VLLMScorer(str(model_dir), tokenizer=tokenizer, max_length=max_length, dtype=dtype, llm=llm)
    close_engine()
    scorer = VLLMScorer(str(model_dir), tokenizer=tokenizer, max_length=max_length, dtype=dtype,
                        enable_sleep_mode=True)
    _ENGINE.update(key=key, llm=scorer.llm, asleep=False)
    return scorer
