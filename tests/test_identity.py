"""What makes two runs comparable (lmforget.identity) and the migration of older manifests (lmforget.migrate)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from lmforget.cli import main
from lmforget.collect import resolve_recipe
from lmforget.config import ExecutorConfig, FinetuneConfig, ScoreConfig, load_recipe, recipe_from_dict
from lmforget.data.types import TaskExample, TaskSet, UpstreamExample, UpstreamSet
from lmforget.errors import LmforgetError
from lmforget.identity import run_fingerprints, study_settings, weights_fingerprint
from lmforget.runs import Run, prepare_run

UPSTREAM = UpstreamSet([UpstreamExample(id="u1", text="The river flows into the sea."),
                        UpstreamExample(id="u2", text="A cat sat on the mat.")])
TASKS = [TaskSet("t", "g", [TaskExample.from_prompt("What is 1+1?", "2")])]


def _recipe(*overrides: str):
    return resolve_recipe(load_recipe("tiny", list(overrides)), ExecutorConfig())


def _prepare(run_dir: Path, *overrides: str) -> Run:
    recipe = _recipe(*overrides)
    return prepare_run(recipe, run_dir, UPSTREAM, TASKS, run_fingerprints(recipe, UPSTREAM, TASKS))


def _gguf(path: Path, salt: int = 0) -> Path:
    """Bytes standing for a GGUF file: identity reads a GGUF's content, it never parses it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + bytes([salt]) + bytes(range(256)) * 64)
    return path


def test_a_moved_and_renamed_gguf_resumes_its_run(tmp_path: Path) -> None:
    first = _gguf(tmp_path / "models" / "smol.gguf")
    run = _prepare(tmp_path / "run", f"model.name={first}")
    moved = tmp_path / "elsewhere" / "renamed.gguf"
    moved.parent.mkdir()
    shutil.move(first, moved)
    again = _prepare(tmp_path / "run", f"model.name={moved}")  # resumes: no refusal
    assert again.manifest["fingerprints"] == run.manifest["fingerprints"]
    model_fp = run.manifest["fingerprints"]["model"]
    assert "smol" not in model_fp and str(tmp_path) not in model_fp
    other = _gguf(tmp_path / "other.gguf", salt=1)  # other content: another model
    with pytest.raises(LmforgetError, match="different model"):
        _prepare(tmp_path / "run", f"model.name={other}")


def test_a_moved_model_directory_resumes_a_collect(tmp_path: Path, load_tiny) -> None:
    """A saved model directory is its config and weight files (names, sizes): moved, nothing is redone."""
    from lmforget.collect import collect

    model, tok = load_tiny("llama")
    first = tmp_path / "models" / "a"
    model.save_pretrained(first)
    tok.save_pretrained(first)
    opts = ["finetune.steps=1", "tasks.tiny.tasks=[add_numbers]"]
    collect(load_recipe("tiny", [f"model.name={first}", *opts]), tmp_path / "run", progress=False)
    row = next((tmp_path / "run" / "rows").glob("*.parquet"))
    stamp = row.stat().st_mtime_ns
    moved = tmp_path / "moved-model"
    shutil.move(first, moved)
    collect(load_recipe("tiny", [f"model.name={moved}", *opts]), tmp_path / "run", progress=False)
    assert row.stat().st_mtime_ns == stamp  # the finished task was not trained again


def test_init_seed_is_part_of_a_tiny_models_identity_only(tmp_path: Path) -> None:
    a, b = (run_fingerprints(_recipe(f"model.init_seed={s}"), UPSTREAM, TASKS) for s in (0, 1))
    assert [k for k in a if a[k] != b[k]] == ["model"]  # not "fine-tuning settings", as `seed` used to say
    gguf = _gguf(tmp_path / "m.gguf")
    assert weights_fingerprint(str(gguf), init_seed=0) == weights_fingerprint(str(gguf), init_seed=1)
    assert weights_fingerprint("org/model", init_seed=0) == weights_fingerprint("org/model", init_seed=1)
    assert "init_seed" not in recipe_from_dict({**_recipe().model_dump(mode="json"),
                                                "model": {"name": "org/model", "init_seed": 3}}).model.science()
    _prepare(tmp_path / "run")
    with pytest.raises(LmforgetError, match="different model"):
        _prepare(tmp_path / "run", "model.init_seed=1")


def test_a_top_level_seed_is_read_as_model_init_seed() -> None:
    assert load_recipe("smollm2-evals", ["seed=3"]).model.init_seed == 3
    with pytest.raises(LmforgetError, match="recipe tiny: bad recipe value: seed=3 and model.init_seed=0 differ"):
        load_recipe("tiny", ["seed=3"])


@pytest.mark.parametrize("override", ["finetune.batch_size=1", "finetune.gradient_checkpointing=true",
                                      "score.batch_size=3", "score.token_budget=512", "executor.cpus_per_task=2"])
def test_a_setting_that_is_not_fingerprinted_resumes(tmp_path: Path, override: str) -> None:
    run = _prepare(tmp_path / "run")
    assert _prepare(tmp_path / "run", override).manifest == run.manifest


@pytest.mark.parametrize("override, label", [("finetune.lr=0.5", "different fine-tuning settings"),
                                             ("finetune.l2sp=0.1", "different fine-tuning settings"),
                                             ("score.max_length=64", "different scorer settings"),
                                             ("score.dtype=bfloat16", "different scoring precision"),
                                             ("model.chat_template=chatml", "different model")])
def test_a_science_setting_change_is_refused_with_its_label(tmp_path: Path, override: str, label: str) -> None:
    _prepare(tmp_path / "run")
    with pytest.raises(LmforgetError, match=label):
        _prepare(tmp_path / "run", override)


def test_every_not_fingerprinted_field_is_left_out_of_its_sections_science() -> None:
    from lmforget.config import NOT_FINGERPRINTED, ReplayConfig

    for section in (FinetuneConfig(), ScoreConfig(), ReplayConfig(run="r", test_tasks=["t"])):
        marked = {n for n, f in type(section).model_fields.items() if NOT_FINGERPRINTED in f.metadata}
        assert marked and not marked & set(section.science())


def test_only_resolved_recipes_are_fingerprinted() -> None:
    with pytest.raises(ValueError, match="score.dtype, finetune.bf16 = auto: resolve the recipe"):
        run_fingerprints(load_recipe("tiny"), UPSTREAM, TASKS)


# ------------------------------------------------------------------------------- migration
def _v1_finetune(recipe: dict) -> str:
    """The fine-tuning fingerprint as lmforget computed it before identity version 2 (runs.py then)."""
    science = {k: v for k, v in recipe["finetune"].items()
               if k not in ("batch_size", "gradient_checkpointing", "deepspeed") and not (k == "l2sp" and not v)}
    data = json.dumps({"finetune": science, "seed": recipe["seed"]}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _make_v1(run_dir: Path, tamper: bool = False) -> dict:
    """Turn a run's manifest into one written before identity version 2."""
    path = run_dir / "manifest.json"
    m = json.loads(path.read_text())
    for key in ("identity_version", "kind", "schema"):  # none of them existed then
        m.pop(key)
    m["recipe"]["seed"] = m["recipe"]["model"].pop("init_seed")
    m["fingerprints"]["finetune"] = "0" * 16 if tamper else _v1_finetune(m["recipe"])
    path.write_text(json.dumps(m))
    return m


def test_a_v1_manifest_is_migrated_on_resume_with_a_note(tmp_path: Path) -> None:
    new = _prepare(tmp_path / "run").manifest
    old = _make_v1(tmp_path / "run")
    assert old["fingerprints"]["finetune"] != new["fingerprints"]["finetune"]
    resumed = _prepare(tmp_path / "run").manifest  # a resume: no refusal
    on_disk = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert on_disk == resumed and on_disk["identity_version"] == 2
    assert on_disk["fingerprints"] == new["fingerprints"] and "seed" not in on_disk["recipe"]
    assert on_disk["recipe"]["model"]["init_seed"] == 0
    note = on_disk["notes"][-1]
    assert old["fingerprints"]["finetune"] in note and "Verified" in note and "identity version 2" in note


def test_a_tampered_v1_manifest_is_refused_and_left_alone(tmp_path: Path, capsys) -> None:
    _prepare(tmp_path / "run")
    _make_v1(tmp_path / "run", tamper=True)
    before = (tmp_path / "run" / "manifest.json").read_text()
    with pytest.raises(LmforgetError, match="cannot migrate .* fine-tuning settings fingerprint"):
        _prepare(tmp_path / "run")
    assert main(["migrate", str(tmp_path / "run")]) == 2
    assert "cannot migrate" in capsys.readouterr().err
    assert (tmp_path / "run" / "manifest.json").read_text() == before


def test_lmforget_migrate_migrates_once(tmp_path: Path, capsys) -> None:
    _prepare(tmp_path / "run")
    _make_v1(tmp_path / "run")
    assert main(["migrate", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["migrated"] == [str(tmp_path / "run")]
    assert main(["migrate", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["current"] == [str(tmp_path / "run")]
    assert len(json.loads((tmp_path / "run" / "manifest.json").read_text())["notes"]) == 1


def test_a_v1_study_manifest_is_migrated_to_the_settings_a_resume_computes(tmp_path: Path) -> None:
    from lmforget.config import ReplayConfig
    from lmforget.migrate import upgrade_manifest

    run = _prepare(tmp_path / "run", "model.init_seed=2")
    replay = ReplayConfig(run=str(run.path), test_tasks=["t"])
    study = _recipe("model.init_seed=2").model_copy(update={"replay": replay})
    want = study_settings(study, run.manifest["fingerprints"])
    v1 = dict(want["recipe"])  # as a version-1 study recorded it: `seed` beside the sections, the run's v1 fingerprints
    v1["model"] = {k: v for k, v in study.model.model_dump(mode="json").items() if k != "init_seed"}
    v1["seed"] = 2
    ran = json.loads(json.dumps(run.manifest["recipe"]))
    ran["seed"] = ran["model"].pop("init_seed")
    legacy_fps = {**run.manifest["fingerprints"], "finetune": _v1_finetune(ran)}
    manifest = {"run": str(run.path),
                "settings": {"recipe": v1, "replay": want["replay"], "run_fingerprints": legacy_fps}}
    migrated = upgrade_manifest(manifest, tmp_path / "study")
    assert migrated["settings"] == want and migrated["identity_version"] == 2 and len(migrated["notes"]) == 1
    manifest["settings"]["run_fingerprints"] = {**legacy_fps, "finetune": "0" * 16}
    with pytest.raises(LmforgetError, match="cannot migrate"):
        upgrade_manifest(manifest, tmp_path / "study")
