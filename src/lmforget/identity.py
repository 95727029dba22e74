"""What makes two runs comparable: the one place that says it.

A run directory records fingerprints of what decides its numbers (model, upstream data, scorer, fine-tuning,
training objective, scoring precision, each task's data); a replay study records its settings and its run's
fingerprints. Resuming recomputes them from the recipe and refuses any difference, so rows computed two ways
never share a matrix.

- Identity is content, not location: a GGUF file is its SHA-256, a model directory its config and weight
  files (names and sizes), a tiny model its architecture, config and `model.init_seed`, a hub model its id
  and revision. A moved or renamed copy resumes a run. The shipped `smollm2` is a named file (name and
  content), like a hub id.
- Settings that do not change what is computed are kept out with the field markers of `lmforget.config`
  (`NOT_FINGERPRINTED`, `ADDED_LATER`), read by every section's `science()`.
- Only resolved recipes are fingerprinted: an `auto` setting means different things on different machines
  (`lmforget.collect.resolve_recipe` resolves them first).

Manifests written before `IDENTITY_VERSION` are migrated on open (`lmforget.migrate`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lmforget.config import TRAINING_OBJECTIVE, FinetuneConfig, ModelConfig, Recipe
from lmforget.data.types import TaskSet, UpstreamSet
from lmforget.errors import LmforgetError

# 2: model identity without paths or mtimes; `seed` left the fine-tuning fingerprint (it is model.init_seed).
IDENTITY_VERSION = 2

FINGERPRINT_LABELS = {"model": "model", "upstream": "upstream data", "scorer": "scorer settings",
                      "finetune": "fine-tuning settings", "objective": "training objective (loss mask, "
                      "master weights)", "score_dtype": "scoring precision"}


def digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tiny_parts(arch: str, init_seed: int) -> dict:
    """What a tiny model's weights are drawn from: its config, tokenizer and seed."""
    from lmforget.models.tiny import TOKENIZER_VERSION, load_tiny_tokenizer, tiny_config

    tok = load_tiny_tokenizer()
    return {"seed": init_seed, "config": tiny_config(arch, tok).to_json_string(use_diff=False),
            "tokenizer": f"v{TOKENIZER_VERSION}-{len(tok)}"}


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weights_fingerprint(spec: str, *, init_seed: int = 0, revision: str | None = None) -> str:
    """`label@digest`: the identity of the weights (and tokenizer) `spec` names, without its location.

    The label is for reading; for a path it is the kind (`gguf`, `dir`), so a moved copy gives the same string.
    A directory is its config.json and its weight files' names and sizes (hashing many GB on every resume
    would cost minutes).
    """
    from lmforget.models.spec import ALIASES, resolve_spec

    kind, target = resolve_spec(spec)
    if kind == "tiny":
        label, parts = spec, {"spec": spec, "kind": kind, **tiny_parts(target, init_seed)}
    elif kind == "gguf" and spec in ALIASES:  # a shipped file: its name and content, as before version 2
        label, parts = spec, {"spec": spec, "kind": kind, "sha256": file_sha256(Path(target))}
    elif kind == "gguf":
        label, parts = kind, {"kind": kind, "sha256": file_sha256(Path(target))}
    elif kind == "dir":
        d = Path(target)
        label, parts = kind, {"kind": kind, "config": (d / "config.json").read_text(encoding="utf-8"),
                              "weights": [f"{f.name}|{f.stat().st_size}" for f in sorted(d.iterdir())
                                          if f.suffix in WEIGHT_SUFFIXES]}
    else:
        label, parts = spec, {"spec": spec, "kind": kind, "revision": revision or "main"}
    return f"{label}@{digest(parts)}"


def model_fingerprint(model: ModelConfig) -> str:
    """The model a recipe fine-tunes, as it formats text: its weights and, unless `auto`, its chat template
    (which changes every encoded example): a shipped template by name, a template file by its content."""
    fp = weights_fingerprint(model.name, init_seed=model.init_seed, revision=model.revision)
    template = model.chat_template
    if template == "auto":
        return fp
    from lmforget.chat_templates import TEMPLATES, template_text

    if template not in TEMPLATES:
        template = f"file@{hashlib.sha256(template_text(template).encode()).hexdigest()[:16]}"
    return f"{fp}+template:{template}"


def task_fingerprint(task: TaskSet) -> str:
    h = hashlib.sha256(json.dumps([task.name, task.group], ensure_ascii=False).encode())
    for split, items in (("train", task.train), ("eval", task.eval)):
        for ex in items:
            h.update(json.dumps([split, ex.to_json()], sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def finetune_fingerprint(finetune: FinetuneConfig) -> str:
    return digest({"finetune": finetune.science()})


def require_resolved(recipe: Recipe) -> None:
    """Refuse a recipe with an `auto` setting left (a programming error: resolve it where the units run)."""
    left = [name for name, value in (("score.dtype", recipe.score.dtype), ("finetune.optimizer",
                                     recipe.finetune.optimizer), ("finetune.bf16", recipe.finetune.bf16))
            if value == "auto"]
    if left:
        raise ValueError(f"{', '.join(left)} = auto: resolve the recipe (lmforget.collect.resolve_recipe) "
                         "before fingerprinting it")


def run_fingerprints(recipe: Recipe, upstream: UpstreamSet, tasks: list[TaskSet]) -> dict:
    """A run directory's fingerprints, from a resolved recipe and its loaded data."""
    require_resolved(recipe)
    return {
        "model": model_fingerprint(recipe.model),
        "upstream": upstream.fingerprint()[:16],
        "scorer": digest({"score": recipe.score.science()}),
        "finetune": finetune_fingerprint(recipe.finetune),
        "objective": TRAINING_OBJECTIVE,
        "score_dtype": recipe.score.dtype,
        "tasks": {t.name: task_fingerprint(t) for t in tasks},
    }


def check_compatible(path: Path, old: dict, new: dict) -> None:
    """Refuse to resume run `path` (fingerprints `old`) with inputs whose fingerprints are `new`."""
    for key, label in FINGERPRINT_LABELS.items():
        if key not in old:
            raise LmforgetError(f"{path} was made by an older lmforget that did not record its {label}; its rows "
                                "cannot be trusted to match new ones: use a new output directory")
        if old[key] != new[key]:
            raise LmforgetError(f"{path} was made with different {label} ({old[key]} != {new[key]}); "
                                "use a new output directory or restore the original recipe")
    for name, fp in old.get("tasks", {}).items():
        if name in new["tasks"] and new["tasks"][name] != fp:
            raise LmforgetError(f"{path}: task {name!r} has different data than when the run was made; "
                                "use a new output directory")


# ------------------------------------------------------------------------------- replay studies
def section_identity(recipe: Recipe, name: str):
    """A recipe section as far as it decides the numbers (a config section's `science()`; data specs whole)."""
    value = getattr(recipe, name)
    if isinstance(value, dict):
        return {k: v.model_dump(mode="json") for k, v in value.items()}
    return value.science() if hasattr(value, "science") else value.model_dump(mode="json")


def study_settings(recipe: Recipe, run_fingerprints: dict) -> dict:
    """A replay study's identity: the sections it shares with its run, its replay settings, the run's fingerprints."""
    require_resolved(recipe)
    if recipe.replay is None:
        raise ValueError("a study's settings need a recipe with a replay section")
    shared = {k: section_identity(recipe, k) for k in ("model", "finetune", "score")}
    shared["score_dtype"] = recipe.score.dtype
    return {"recipe": shared, "replay": recipe.replay.science(), "run_fingerprints": run_fingerprints}


def check_study(path: Path, old: dict, new: dict) -> None:
    """Refuse to resume study `path` (settings `old`) with settings `new`."""
    if old != new:
        diff = [k for k in new if old.get(k) != new[k]]
        raise LmforgetError(f"{path} was made with different {', '.join(diff) or 'settings'}; "
                            "use a new output directory or restore the original recipe")
