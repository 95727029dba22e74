"""Migrating a run's or a replay study's manifest made before `identity.IDENTITY_VERSION` (2).

Version 2 changed two fingerprints (docs/architecture.md, "Run directory"):
- model: a GGUF file given by path is its content alone, and a model directory its config and weight files'
  names and sizes: the path (and the files' mtimes) left the fingerprint, so a moved copy resumes; a chat
  template file is its content, not its path;
- fine-tuning: the top-level recipe `seed` left it. It is `model.init_seed` now and only ever seeded a tiny
  model's initial weights, which the model fingerprint always held.

A manifest without `identity_version` is migrated when its directory is opened for writing (collect, replay)
or by `lmforget migrate DIR`: the fingerprints that changed are recomputed with the legacy formulas below
from the manifest's own recipe, and must equal what it stores (else it is refused, as a changed recipe is);
then the new ones replace them, the recipe is stored in the new schema and a note in `notes` says what
changed, why, when and that it was verified. The legacy formulas are used for nothing else.
"""

from __future__ import annotations

import time
from pathlib import Path

from lmforget import __version__
from lmforget.config import FinetuneConfig, ModelConfig, recipe_from_dict
from lmforget.errors import LmforgetError
from lmforget.identity import (
    FINGERPRINT_LABELS,
    IDENTITY_VERSION,
    WEIGHT_SUFFIXES,
    digest,
    file_sha256,
    finetune_fingerprint,
    model_fingerprint,
    tiny_parts,
)
from lmforget.workdir import MANIFEST, Kind, WorkDir, kind_of, read_manifest

_HARDWARE_ONLY_V1 = ("batch_size", "gradient_checkpointing", "deepspeed")  # left out of v1 fine-tuning fingerprints
_WHY = ("identity version 2: a model given by path is identified by its content, not its location (a moved copy "
        "resumes), and a chat template file by its content; the recipe's top-level `seed` left the fine-tuning "
        "fingerprint (it is model.init_seed, which only seeds a tiny model's initial weights and was always in the "
        "model fingerprint)")


# ------------------------------------------------------------------------------- legacy formulas (version 1)
def legacy_model_fingerprint(model: dict, seed: int) -> str:
    """Version 1's model fingerprint: the spec, and for a GGUF path or a directory its location (and mtimes)."""
    from lmforget.models.spec import resolve_spec

    spec = model["name"]
    kind, target = resolve_spec(spec)
    parts: dict = {"spec": spec, "kind": kind}
    if kind == "tiny":
        parts.update(tiny_parts(target, seed))
    elif kind == "gguf":
        parts["sha256"] = file_sha256(Path(target))
    elif kind == "dir":
        d = Path(target)
        parts["config"] = (d / "config.json").read_text(encoding="utf-8")
        parts["weights"] = [f"{f.name}|{f.stat().st_size}|{f.stat().st_mtime_ns}" for f in sorted(d.iterdir())
                            if f.suffix in WEIGHT_SUFFIXES]
    else:
        parts["revision"] = model.get("revision") or "main"
    fp = f"{spec}@{digest(parts)}"
    template = model.get("chat_template", "auto")
    return fp if template == "auto" else f"{fp}+template:{template}"


def legacy_finetune_fingerprint(science: dict, seed: int) -> str:
    """Version 1's fine-tuning fingerprint: the fingerprinted settings and the recipe's top-level seed."""
    return digest({"finetune": science, "seed": seed})


def _legacy_science(finetune: dict) -> dict:
    out = {k: v for k, v in finetune.items() if k not in _HARDWARE_ONLY_V1}
    if not out.get("l2sp", 1):
        del out["l2sp"]
    return out


# ------------------------------------------------------------------------------- migration
def _verified(where: Path, stored: dict, legacy: dict) -> None:
    for key, value in legacy.items():
        if stored.get(key) != value:
            raise LmforgetError(f"{where}: cannot migrate its manifest to identity version {IDENTITY_VERSION}: the "
                                f"stored {FINGERPRINT_LABELS[key]} fingerprint ({stored.get(key)}) is not what the "
                                f"legacy formula gives for its recipe ({value}); use a new output directory")


def _note(old: dict, new: dict) -> str:
    changed = "; ".join(f"{k} {old[k]} -> {new[k]}" for k in ("model", "finetune") if old[k] != new[k])
    return (f"{time.strftime('%Y-%m-%d')}: migrated by lmforget {__version__} to {_WHY}. Fingerprints: "
            f"{changed or 'unchanged'}. Verified: the stored fingerprints equal the legacy (version 1) formulas' "
            "recomputation from this manifest's recipe before they were replaced")


def _upgraded(where: Path, fps: dict, model: dict, seed: int, finetune_science: dict) -> dict:
    """`fps` with the model and fine-tuning fingerprints of version 2, after checking the stored ones."""
    _verified(where, fps, {"model": legacy_model_fingerprint(model, seed),
                           "finetune": legacy_finetune_fingerprint(finetune_science, seed)})
    new_model = ModelConfig.model_validate({**model, "init_seed": seed})
    finetune = FinetuneConfig.model_validate(finetune_science)
    return {**fps, "model": model_fingerprint(new_model), "finetune": finetune_fingerprint(finetune)}


def upgrade_run_manifest(manifest: dict, where: Path) -> dict:
    """A version-1 run manifest in version 2 (verified; see the module docstring)."""
    stored = manifest["recipe"]
    seed = stored.get("seed", 0)
    fps = _upgraded(where, manifest["fingerprints"], stored["model"], seed, _legacy_science(stored["finetune"]))
    recipe = recipe_from_dict(stored)  # `seed` becomes model.init_seed
    return {**manifest, "identity_version": IDENTITY_VERSION, "recipe": recipe.model_dump(mode="json"),
            "fingerprints": fps, "notes": [*manifest.get("notes", []), _note(manifest["fingerprints"], fps)]}


def upgrade_study_manifest(manifest: dict, where: Path) -> dict:
    """A version-1 replay study manifest in version 2: its run's fingerprints and its model section."""
    settings = manifest["settings"]
    shared = dict(settings["recipe"])
    seed = shared.pop("seed", 0)
    fps = _upgraded(where, settings["run_fingerprints"], shared["model"], seed, shared["finetune"])
    shared["model"] = ModelConfig.model_validate({**shared["model"], "init_seed": seed}).science()
    return {**manifest, "identity_version": IDENTITY_VERSION,
            "settings": {**settings, "recipe": shared, "run_fingerprints": fps},
            "notes": [*manifest.get("notes", []), _note(settings["run_fingerprints"], fps)]}


def upgrade_manifest(manifest: dict, where: Path) -> dict | None:
    """The manifest of run or replay study `where` in the current identity version, or None when it is already
    (or is of a kind that records no identity of its own: a similarity analysis holds its run's fingerprints)."""
    kind = kind_of(manifest)
    if kind not in ("run", "replay-study") or manifest.get("identity_version") == IDENTITY_VERSION:
        return None
    if manifest.get("identity_version", 1) != 1:
        raise LmforgetError(f"{where}: identity version {manifest['identity_version']} is newer than this "
                            f"lmforget's ({IDENTITY_VERSION}); upgrade lmforget")
    return upgrade_run_manifest(manifest, where) if kind == "run" else upgrade_study_manifest(manifest, where)


def migrate(path: str | Path, kind: Kind | None = None) -> bool:
    """Migrate the run or study directory `path` in place (`lmforget migrate`); False when it was current.

    With `kind` (collect and replay, before they open a directory), anything else is left to their checks:
    a missing manifest or another kind is not an error here."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest is None or kind_of(manifest) not in ("run", "replay-study"):
        if kind is not None:
            return False
        raise LmforgetError(f"{path}: not a run or replay study directory (no {MANIFEST} of one)")
    if kind is not None and kind_of(manifest) != kind:
        return False
    new = upgrade_manifest(manifest, path)
    if new is None:
        return False
    WorkDir(path, kind_of(manifest), manifest).write_manifest(new)
    return True
