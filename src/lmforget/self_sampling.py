"""Self-sampled upstream data: contexts continued by the base model itself (docs/protocol.md section 2).

Why: for a model whose pre-training data is not available, text drawn from the model is the one
upstream set it is certainly fitted to. At the base weights theta0, E_{y ~ p_theta0(.|c)} of
grad log p_theta(y|c) is zero, so replaying such samples teaches nothing in expectation, and the
increase of their NLL after fine-tuning estimates KL(p_theta0 || p_theta) >= 0.

That argument needs every token to be a draw from the model's own conditional, so the sampler is
deliberately plain: fp32 weights, temperature 1 over the full vocabulary (no top-k, top-p, min-p,
repetition penalty or generation_config defaults: our own loop, not `generate`), exactly
`new_tokens` tokens, and EOS is an ordinary token: it is neither suppressed nor a stop, the model
keeps continuing after it (suppressing it, or stopping early, would change the distribution or the
length). Each example's draws come from its own uniforms (seed, example index), drawn by inverse
CDF, so an example's sample does not depend on how the examples were batched.

The token ids are stored as drawn (no decode/re-encode round trip) and cached under a fingerprint
of the model, the contexts' ids, the length and the seed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from lmforget.atomic import atomic_path
from lmforget.data.types import UpstreamSet
from lmforget.errors import LmforgetError

SAMPLER_VERSION = 1  # bump when the sampling procedure changes: old caches are then not reused
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def first_sentences(text: str, k: int) -> str:
    """The first k sentences of a text (split after . ! ? followed by a capitalised word)."""
    parts = _SENTENCE_END.split(text.strip())
    return " ".join(parts[:k])


def sample_continuations(model, prompts: Sequence[Sequence[int]], new_tokens: int, seed: int, *,
                         pad_id: int = 0, batch_size: int = 32, progress: bool = False) -> list[list[int]]:
    """Exactly `new_tokens` ids per prompt, each drawn from softmax(logits) at temperature 1.

    Batches are left-padded with position ids from the attention mask and reuse the KV cache.
    """
    import inspect

    import torch

    from lmforget.progress import token_progress

    if new_tokens < 1:
        raise LmforgetError("new_tokens must be at least 1")
    if any(len(p) == 0 for p in prompts):
        raise LmforgetError("every context needs at least one token")
    # uniforms[i, t] drives example i's t-th draw, whatever batch it lands in
    uniforms = np.random.default_rng(seed).random((len(prompts), new_tokens))
    device = model.get_input_embeddings().weight.device
    params = inspect.signature(model.forward).parameters
    pass_positions = "position_ids" in params
    cache_arg = "cache" if "cache" in params else "past_key_values"  # transformers >= 5.2x renamed it
    keep_last = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    order = np.argsort([-len(p) for p in prompts], kind="stable")
    out: list[list[int]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    bar = token_progress(progress, len(prompts) * new_tokens, "sampling continuations")
    try:
        with torch.inference_mode(), bar as advance:
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                width = max(len(prompts[i]) for i in rows)
                ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):
                    ids[r, width - len(prompts[i]):] = torch.tensor(list(prompts[i]), dtype=torch.long)
                    mask[r, width - len(prompts[i]):] = 1
                ids, mask = ids.to(device), mask.to(device)
                pos = (mask.cumsum(-1) - 1).clamp(min=0)
                u = torch.from_numpy(uniforms[rows]).to(device)
                kwargs = {"position_ids": pos} if pass_positions else {}
                result = model(input_ids=ids, attention_mask=mask, use_cache=True, **kwargs, **keep_last)
                drawn = []
                for t in range(new_tokens):
                    tok = _draw(result.logits[:, -1], u[:, t])
                    drawn.append(tok)
                    if t == new_tokens - 1:
                        break
                    mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                    pos = pos[:, -1:] + 1
                    kwargs = {"position_ids": pos} if pass_positions else {}
                    kwargs[cache_arg] = _cache_of(result)
                    result = model(input_ids=tok.unsqueeze(1), attention_mask=mask, use_cache=True, **kwargs)
                block = torch.stack(drawn, dim=1).cpu().tolist()
                for r, i in enumerate(rows):
                    out[i] = [int(x) for x in block[r]]
                advance(len(rows) * new_tokens)
    finally:
        model.train(was_training)
    return out


def _cache_of(result):
    cache = getattr(result, "cache", None)
    return cache if cache is not None else result.past_key_values


def _draw(logits, u):
    """Inverse-CDF draw from softmax(logits) (fp64 cumulative sum) with the given uniforms."""
    import torch

    probs = torch.softmax(logits.double(), dim=-1)
    cdf = probs.cumsum(-1)
    target = (u.double() * cdf[:, -1]).unsqueeze(1)
    idx = torch.searchsorted(cdf, target, right=True).squeeze(1)
    return idx.clamp(max=logits.shape[-1] - 1)


def context_ids(tokenizer, text: str) -> list[int]:
    """A context's ids as `encode_text` makes them: the tokenizer's own leading specials, no trailing EOS."""
    from lmforget.encoding import encode_text

    return encode_text(tokenizer, text).input_ids


def draw_identity(model_fp: str, prompts: Sequence[Sequence[int]], ids: Sequence[str], new_tokens: int,
                  seed: int) -> dict:
    """What determines a draw: the cache key is its hash, and a pinned samples file carries it as its header."""
    h = hashlib.sha256()
    for i, p in zip(ids, prompts, strict=True):
        h.update(json.dumps([i, list(p)]).encode())
    return {"model": model_fp, "seed": seed, "new_tokens": new_tokens, "contexts": h.hexdigest()[:16],
            "sampler": SAMPLER_VERSION}


def cache_key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _cache_path(key: str, cache: Path | None) -> Path:
    from lmforget.resources import cache_dir

    return (cache if cache is not None else cache_dir() / "self-sampled") / f"{key}.jsonl"


def self_sampled_upstream(spec, model: str, *, model_seed: int = 0, revision: str | None = None,
                          trust_remote_code: bool = False, device: str = "auto", cache: Path | None = None,
                          progress: bool = True, log=lambda s: None) -> UpstreamSet:
    """The self-sampled upstream set a spec describes, sampled from `model` (or read from the cache).

    `spec.model`, when set, must name `model`: the samples must come from the base model itself.
    """
    from lmforget.data.specs import upstream_spec
    from lmforget.models import load_model, load_tokenizer, model_fingerprint
    from lmforget.resources import resolve_path

    spec = upstream_spec(spec)
    if spec.format != "self-sampled":
        raise LmforgetError(f"upstream format {spec.format!r} is not 'self-sampled'")
    if spec.model is not None and spec.model != model:
        raise LmforgetError(f"upstream.model={spec.model!r} differs from the model {model!r}: self-sampled "
                            "upstream data must be drawn from the base model that is fine-tuned")
    tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code, revision=revision)
    contexts, prompts = _contexts(spec, tokenizer)
    model_fp = model_fingerprint(model, seed=model_seed, revision=revision)
    header = draw_identity(model_fp, prompts, contexts.ids, spec.new_tokens, spec.seed)
    path = _cache_path(cache_key(header), cache)
    pinned = Path(resolve_path(spec.samples)) if spec.samples else None  # 'package:' = shipped with lmforget
    drawn = _read_pinned(pinned, header, contexts.ids) if pinned is not None and pinned.is_file() else None
    if drawn is not None:
        log(f"self-sampled continuations read from {pinned}")
        return _examples(spec, tokenizer, contexts, prompts, drawn)
    drawn = _read_cache(path, contexts.ids, spec.new_tokens)
    if drawn is None:
        log(f"sampling {len(prompts)} continuations of {spec.new_tokens} tokens from {model} (fp32)")
        lm, tok = load_model(model, device=device, dtype="float32", trust_remote_code=trust_remote_code,
                             seed=model_seed, revision=revision)
        drawn = sample_continuations(lm, prompts, spec.new_tokens, spec.seed, pad_id=tok.pad_token_id or 0,
                                     progress=progress)
        del lm
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                for i, ys in zip(contexts.ids, drawn, strict=True):
                    fh.write(json.dumps({"id": i, "continuation": ys}) + "\n")
    else:
        log(f"self-sampled continuations read from {path}")
    if pinned is not None:
        _write_pinned(pinned, header, contexts.ids, drawn)
        log(f"self-sampled continuations pinned in {pinned}")
    return _examples(spec, tokenizer, contexts, prompts, drawn)


def _contexts(spec, tokenizer) -> tuple[UpstreamSet, list[list[int]]]:
    """The spec's contexts and their token ids (the prompts the continuations were drawn after)."""
    from lmforget.data.load import load_upstream

    contexts = load_upstream(spec.contexts, tokenizer=tokenizer)
    if any(ex.text is None for ex in contexts):
        raise LmforgetError("self-sampled: contexts must be raw text (chat contexts are not supported)")
    texts = [ex.text or "" for ex in contexts]
    if spec.context_sentences is not None:
        texts = [first_sentences(t, spec.context_sentences) for t in texts]
    prompts = [context_ids(tokenizer, t) for t in texts]
    empty = [ex.id for ex, p in zip(contexts, prompts, strict=True) if not p]
    if empty:
        raise LmforgetError(f"self-sampled: context {empty[0]!r} has no tokens")
    return contexts, prompts


def pinned_upstream(spec, model: str, model_fp: str, fingerprint: str, *, roots: Sequence[Path] = (),
                    revision: str | None = None, trust_remote_code: bool = False,
                    cache: Path | None = None) -> tuple[UpstreamSet, Path]:
    """A run's self-sampled set rebuilt from drawn ids already on disk, never sampled anew.

    For a run directory without its data/ copy: the contexts are re-read and re-tokenised with the
    run's tokenizer, and the continuations come from a pinned samples file whose header is this draw's
    identity (`model_fp` is the run's recorded model fingerprint), or from the sampling cache. Pinned
    files are looked for at `spec.samples` (as given, then under each of `roots`) and in the `samples/`
    folder of each root. The rebuilt set is returned (with the file it came from) only when its
    fingerprint starts with the run's recorded `fingerprint`; otherwise one LmforgetError says why.
    """
    from lmforget.data.specs import upstream_spec
    from lmforget.models import load_tokenizer
    from lmforget.resources import resolve_path

    spec = upstream_spec(spec)
    if spec.format != "self-sampled":
        raise LmforgetError(f"upstream format {spec.format!r} is not 'self-sampled'")
    tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code, revision=revision)
    contexts, prompts = _contexts(spec, tokenizer)
    header = draw_identity(model_fp, prompts, contexts.ids, spec.new_tokens, spec.seed)
    candidates: list[Path] = []
    if spec.samples:
        given = Path(resolve_path(spec.samples))
        candidates += [given] + ([r / given for r in roots] if not given.is_absolute() else [])
    candidates += [f for r in roots for f in sorted((r / "samples").glob("*.jsonl"))]
    why = ("no samples file drawn with this identity (model, seed, length, contexts)"
           + (f" at {spec.samples}" if spec.samples else "")
           + (f"{' or' if spec.samples else ''} in a samples/ folder of {roots[0]} or its parents" if roots else "")
           + ", nor in the sampling cache")
    for path in dict.fromkeys(candidates):
        if not path.is_file() or _pinned_header(path) != {k: header[k] for k in _PINNED_FIELDS}:
            continue
        try:
            drawn = _read_pinned(path, header, contexts.ids)
        except LmforgetError as exc:
            why = str(exc)
            continue
        found = _examples(spec, tokenizer, contexts, prompts, drawn)
        if found.fingerprint().startswith(fingerprint):
            return found, path
        why = (f"{path}: the examples it gives have another fingerprint than the run's "
               f"({found.fingerprint()[:16]} != {fingerprint})")
    cached = _cache_path(cache_key(header), cache)
    drawn = _read_cache(cached, contexts.ids, spec.new_tokens)
    if drawn is not None:
        found = _examples(spec, tokenizer, contexts, prompts, drawn)
        if found.fingerprint().startswith(fingerprint):
            return found, cached
        why = f"{cached}: the examples it gives have another fingerprint than the run's"
    raise LmforgetError(f"self-sampled upstream: {why}")


def _pinned_header(path: Path) -> dict | None:
    """The identity on a samples file's first line (None when it is not a samples file)."""
    try:
        with open(path, encoding="utf-8") as fh:
            head = json.loads(fh.readline()).get("self_sampled")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return {k: head.get(k) for k in _PINNED_FIELDS} if isinstance(head, dict) else None


def _examples(spec, tokenizer, contexts, prompts, drawn) -> UpstreamSet:
    examples = []
    for ex, p, ys in zip(contexts, prompts, drawn, strict=True):
        ids = tuple(p) + tuple(ys)
        text = tokenizer.decode(list(ids), skip_special_tokens=False)  # for reading only; ids are the data
        examples.append(replace(ex, text=text, input_ids=ids, prompt_len=len(p),
                                source=ex.source or "self-sampled"))
    return UpstreamSet(examples, name=spec.name or "self-sampled", stats=dict(contexts.stats))  # the contexts' counts


_PINNED_FIELDS = {"model": "model", "seed": "seed", "new_tokens": "new_tokens",
                  "contexts": "contexts (ids or token ids)", "sampler": "sampler version"}


def _read_pinned(path: Path, header: dict, ids: Sequence[str]) -> list[list[int]]:
    """The continuations of an `upstream.samples` file; one clear error when they were drawn otherwise."""
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LmforgetError(f"upstream.samples {path}: unreadable ({exc})") from None
    head = rows[0].get("self_sampled") if rows and isinstance(rows[0], dict) else None
    if not isinstance(head, dict):
        raise LmforgetError(f"upstream.samples {path}: not a samples file (its first line must be "
                            '{"self_sampled": {...}}, as lmforget writes it)')
    for k, label in _PINNED_FIELDS.items():
        if head.get(k) != header[k]:
            raise LmforgetError(f"upstream.samples {path}: drawn with another {label} ({head.get(k)} != "
                                f"{header[k]}); point upstream.samples at a new file to sample afresh")
    rows = rows[1:]
    n = header["new_tokens"]
    if [r.get("id") for r in rows] != list(ids) or \
            any(not isinstance(r.get("continuation"), list) or len(r["continuation"]) != n for r in rows):
        raise LmforgetError(f"upstream.samples {path}: damaged (every line after the first needs an id and "
                            f"{n} token ids)")
    return [[int(t) for t in r["continuation"]] for r in rows]


def _write_pinned(path: Path, header: dict, ids: Sequence[str], drawn: Sequence[Sequence[int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"self_sampled": header}, sort_keys=True) + "\n")
            for i, ys in zip(ids, drawn, strict=True):
                fh.write(json.dumps({"id": i, "continuation": list(ys)}) + "\n")


def _read_cache(path: Path, ids: Sequence[str], new_tokens: int) -> list[list[int]] | None:
    if not path.is_file():
        return None
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except json.JSONDecodeError:
        return None  # a corrupt cache is resampled (the write is atomic, so this is not expected)
    if [r.get("id") for r in rows] != list(ids) or any(len(r.get("continuation", ())) != new_tokens for r in rows):
        return None
    return [[int(t) for t in r["continuation"]] for r in rows]
