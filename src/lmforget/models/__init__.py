"""Load a causal LM and its tokenizer from one string: a tiny random config, a directory, a hub id, a GGUF file.

Every stage (fine-tuning, scoring, generation) gets its model here, so the rules live in one place:
bf16 on CUDA and fp32 on CPU unless the caller says otherwise (`device`); remote code only when asked; a
tokenizer always has a pad token and a chat template (`hub`). `spec` says what a string names; `tiny`,
`gguf` and `hub` load each kind. What makes two models the same is `lmforget.identity`'s business.
"""

from __future__ import annotations

from pathlib import Path

from lmforget.models.device import DTYPES, native_bf16, resolve_device, resolve_dtype, training_dtype
from lmforget.models.gguf import gguf_tokenizer, load_gguf
from lmforget.models.hub import finish_tokenizer, no_hf_progress_bars, pretrained
from lmforget.models.spec import ALIASES, resolve_spec
from lmforget.models.tiny import TINY_ARCHS, build_tiny, load_tiny_tokenizer, tiny_config
from lmforget.resources import cache_dir

__all__ = ["ALIASES", "DTYPES", "TINY_ARCHS", "cache_dir", "load_model", "load_recipe_model", "load_tiny_tokenizer",
           "load_tokenizer", "native_bf16", "resolve_device", "resolve_dtype", "resolve_spec", "tiny_config",
           "training_dtype"]


def load_tokenizer(spec: str, *, trust_remote_code: bool = False, revision: str | None = None):
    """The tokenizer of `spec` alone (no weights loaded), with a pad token and a chat template."""
    kind, target = resolve_spec(spec)
    if kind == "tiny":
        return load_tiny_tokenizer()
    if kind == "gguf":
        return finish_tokenizer(gguf_tokenizer(Path(target)))
    from transformers import AutoTokenizer

    tok = pretrained(AutoTokenizer, kind, target, spec, trust_remote_code=trust_remote_code, revision=revision)
    return finish_tokenizer(tok)


def load_model(
    spec: str,
    *,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    seed: int = 0,
    revision: str | None = None,
):
    """(model, tokenizer) for `spec`, the model in eval mode on `device`.

    spec: ``tiny:<arch>`` (random init from `seed`), ``smollm2`` (offline demo model), a ``.gguf`` file,
    a local model directory, or a hub id (read from the local HF cache when offline).
    dtype: ``float32`` | ``bfloat16`` | ``float16`` | ``auto`` (the default: bf16 on CUDA, fp32 on CPU).
    """
    kind, target = resolve_spec(spec)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    with no_hf_progress_bars():  # our own progress bars say what is happening; no tqdm per load
        if kind == "tiny":
            tok = load_tiny_tokenizer()
            model = build_tiny(target, tok, seed).to(torch_dtype)
        elif kind == "gguf":
            model, tok = load_gguf(Path(target), torch_dtype)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            opts = dict(trust_remote_code=trust_remote_code, revision=revision)
            tok = pretrained(AutoTokenizer, kind, target, spec, **opts)
            model = pretrained(AutoModelForCausalLM, kind, target, spec, dtype=torch_dtype, **opts)
    tok = finish_tokenizer(tok)
    if model.get_input_embeddings().num_embeddings < len(tok):
        model.resize_token_embeddings(len(tok))
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    model.to(dev)
    model.eval()
    return model, tok


def load_recipe_model(recipe, dtype: str | None = None):
    """The model and tokenizer a recipe names (`recipe.model`; a tiny one initialised from `model.init_seed`),
    freshly loaded.

    The one place a recipe becomes a model: collection, the replay study and the similarity analysis
    all start from exactly these base weights. `dtype` overrides `recipe.model.dtype`.
    """
    from lmforget.chat_templates import use_chat_template

    m = recipe.model
    model, tokenizer = load_model(m.name, device=m.device, dtype=dtype or m.dtype,
                                  trust_remote_code=m.trust_remote_code, seed=m.init_seed, revision=m.revision)
    use_chat_template(tokenizer, m.chat_template)  # the recipe's template, for tasks and chat upstream data
    return model, tokenizer
