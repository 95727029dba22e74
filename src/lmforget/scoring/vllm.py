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
import json
import math
import os
import shutil
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
            max_model_len=engine_max_len(model, max_length),
            **llm_options,
        )

    def score(self, examples: Sequence[UpstreamExample]) -> list[ScoreResult]:
        encoded = [encode_upstream(self.tokenizer, ex, self.max_length) for ex in examples]
        todo = [i for i, e in enumerate(encoded) if e.n_scored > 0]
        prompts = [self._prompt(prompt_token_ids=encoded[i].input_ids) for i in todo]
        outputs = self.llm.generate(prompts, self._params, use_tqdm=True) if prompts else []
        nll = {i: math.nan for i in range(len(examples))}
        for i, out in zip(todo, outputs, strict=True):
            enc = encoded[i]
            total = 0.0
            # prompt_logprobs[t] is None for t = 0, else {token_id: Logprob} holding x_t's own entry.
            for t, (tok, keep) in enumerate(zip(enc.input_ids, enc.scored, strict=True)):
                if keep:
                    total -= out.prompt_logprobs[t][tok].logprob
            nll[i] = total / enc.n_scored
        return [ScoreResult(ex.id, nll[i], encoded[i].n_scored) for i, ex in enumerate(examples)]


# Config keys vLLM derives a model's maximum length from (the smallest one present wins).
_MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                 "max_sequence_length", "max_seq_length", "seq_len")


def model_max_positions(model: str) -> int | None:
    """The longest sequence the model's config.json allows, as vLLM derives it (None: no local config)."""
    path = Path(model) / "config.json"
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg = {**cfg.get("text_config", {}), **cfg}
    found = [int(cfg[k]) for k in _MAX_LEN_KEYS if isinstance(cfg.get(k), (int, float))]
    return min(found) if found else None


def engine_max_len(model: str, max_length: int | None) -> int | None:
    """The engine's max_model_len: room for the scored prompt and the one token vLLM samples after it,
    never above the model's own limit (vLLM refuses to start above it: Pythia has 2048 positions and
    its recipes score 2048 tokens; a prompt may fill max_model_len exactly)."""
    if max_length is None:
        return None
    limit = model_max_positions(model)
    if limit is not None and max_length > limit:
        raise LmforgetError(f"score.max_length={max_length} is longer than the model's {limit} positions "
                            f"({model}); set score.max_length <= {limit}")
    return max_length + 1 if limit is None else min(max_length + 1, limit)


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


def _shutdown(llm) -> None:
    """Stop the engine's worker processes now (vLLM V1 runs the model in an engine-core process that
    otherwise ends only when the collector finds the last reference)."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


def close_engine() -> None:
    """Drop this process's engine, give its GPU memory back and remove the weights folder it read."""
    _drop_engine()
    shutil.rmtree(engine_dir(), ignore_errors=True)  # a full copy of the weights: 14 GB at 7B


def _drop_engine() -> None:
    llm = _ENGINE.pop("llm", None)
    _ENGINE.clear()
    if llm is not None:
        _shutdown(llm)
        del llm
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _reload(llm) -> bool:
    """Wake the shared engine and load the weights now in its folder; False when this vLLM cannot reload
    in place. Holds no reference to the engine or to an exception (its traceback would hold the engine)
    once it returns, so that the caller can free the engine before building another."""
    if _ENGINE["asleep"]:
        llm.wake_up()
        _ENGINE["asleep"] = False
    try:
        llm.collective_rpc("reload_weights")  # from model_dir, where the new weights were just saved
    except Exception:  # noqa: BLE001 - a vLLM without in-place reloading: the caller builds the engine anew
        return False
    llm.reset_prefix_cache()  # cached KV blocks belong to the previous weights
    return True


def shared_scorer(model_dir: str, tokenizer, *, max_length: int | None, dtype: str) -> VLLMScorer:
    """A scorer on this process's one engine: built on first use, later reloaded with the weights now in
    `model_dir` (which must be `engine_dir()` for reuse; another directory builds a new engine)."""
    key = (str(model_dir), max_length, dtype)
    if _ENGINE.get("llm") is not None and _ENGINE["key"] == key:
        if _reload(_ENGINE["llm"]):
            return VLLMScorer(str(model_dir), tokenizer=tokenizer, max_length=max_length, dtype=dtype,
                              llm=_ENGINE["llm"])
    _drop_engine()  # the only reference left to the old engine: it is gone before a new one starts
    scorer = VLLMScorer(str(model_dir), tokenizer=tokenizer, max_length=max_length, dtype=dtype,
                        enable_sleep_mode=True)
    _ENGINE.update(key=key, llm=scorer.llm, asleep=False)
    return scorer
