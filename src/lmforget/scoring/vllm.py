"""vLLM backend of `Scorer`: prompt log-probabilities of the very token ids the HF backend scores.

Optional and GPU-only: `vllm` is imported when a VLLMScorer is built, never at package import.
Encoding (scored positions, truncation) is lmforget.encoding's, done with the HF tokenizer, so both
backends score identical tokens; vLLM only supplies log p(x_t | x_<t) for every prompt position.
"""

from __future__ import annotations

import math
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
        self.llm = LLM(
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
