"""GGUF files (the offline SmolLM2 demo model): dequantised once by transformers and cached as safetensors,
because reading the GGUF takes ~30 s and the cache < 1 s."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from lmforget.errors import LmforgetError
from lmforget.resources import cache_dir


def _publish_dir(tmp: Path, final: Path) -> None:
    """Move a fully written temp directory into place; a concurrent writer that won first is kept."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _file_identity(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def gguf_cache_path(path: Path) -> Path:
    """Where a GGUF's dequantised copy is cached: keyed by location, size and mtime, a check that costs nothing
    on every load (a run's identity is the file's content: `lmforget.identity.model_fingerprint`)."""
    key = hashlib.sha256(_file_identity(path).encode()).hexdigest()[:24]
    return cache_dir() / "models" / key


def load_gguf(path: Path, torch_dtype):
    """Dequantise a GGUF once, cache it as safetensors, load the cache.

    transformers dequantises every GGUF tensor to fp32 on load. The SmolLM2 file holds 210 Q4_1 tensors,
    one Q8_0 (the tied embedding) and 61 F32 (norms), so the demo model is SmolLM2-135M-Instruct with
    4-bit-rounded weights held in fp32 (538 MB cache), not the original bf16 checkpoint.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = gguf_cache_path(path)
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


def gguf_tokenizer(path: Path):
    """The tokenizer of a GGUF file: from its cache when dequantised already (fast), else from the file."""
    from transformers import AutoTokenizer

    cached = gguf_cache_path(path)
    if (cached / "config.json").is_file():
        return AutoTokenizer.from_pretrained(cached)
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
