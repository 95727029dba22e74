"""Every shipped paper recipe runs end to end: its model swapped for the tiny config of the same
architecture and its data for fixtures in the same formats; everything else (steps aside) unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from lmforget.cli import main
from lmforget.config import FinetuneConfig, load_recipe, load_recipe_data, shipped_recipes
from lmforget.errors import LmforgetError
from lmforget.matrix import ForgettingMatrix
from lmforget.runs import Run

FIX = Path(__file__).parent / "fixtures" / "data"

ARCH = {  # recipe -> tiny model of the same architecture
    "olmo-1b": "tiny:olmo", "olmo-7b": "tiny:olmo", "olmo-7b-instruct": "tiny:olmo",
    "olmo-7b-instruct-binary": "tiny:olmo", "mpt-7b": "tiny:mpt", "olmo2-7b": "tiny:olmo2",
    "olmo2-13b": "tiny:olmo2", "pythia-1b": "tiny:gpt_neox", "pythia-6.9b": "tiny:gpt_neox",
    "pythia-12b": "tiny:gpt_neox",
}
DATA = {  # recipe data format -> fixture in that format
    "dolma": FIX / "dolma", "pile": FIX / "pile.jsonl", "tulu": FIX / "tulu.jsonl", "flan": FIX / "flan.jsonl",
    "dolly": FIX / "dolly.jsonl", "mmlu": FIX / "mmlu", "bbh": FIX / "bbh", "truthfulqa": FIX / "truthfulqa.csv",
}




def test_every_paper_recipe_is_covered() -> None:
    own = {"tiny", "demo", "demo-evals", "smollm2-evals"}  # lmforget's own CPU setups, tested elsewhere
    collect_recipes = {r for r in shipped_recipes() if not r.startswith("replay")} - own
    assert sorted(ARCH) == sorted(collect_recipes)


def _raw(name: str) -> dict:
    """The recipe as resolved (its `base:` chain applied), before validation."""
    return load_recipe_data(name)


def _own(name: str) -> dict:
    """The recipe file's own text, `base:` not applied."""
    from importlib import resources

    return yaml.safe_load((resources.files("lmforget.recipes") / f"{name}.yaml").read_text())


def _paths(name: str) -> list[str]:
    """Fixtures in each data format of the recipe, in place of the paper's data."""
    raw = _raw(name)
    return [f"upstream.path={DATA[raw['upstream']['format']]}",
            *(f"tasks.{source}.path={DATA[spec['format']]}" for source, spec in raw["tasks"].items())]


def _overrides(name: str) -> list[str]:
    return [f"model.name={ARCH[name]}", "upstream.n=6", "finetune.steps=2", "finetune.batch_size=8",
            "finetune.max_length=96", "score.max_length=96", "score.max_new_tokens=4", "finetune.deepspeed=null",
            *_paths(name), *(f"tasks.{source}.max_tasks=1" for source in _raw(name)["tasks"])]


GOLDEN = ("pythia-1b", "olmo-7b-instruct")  # raw text (Pile) and chat answers (Tulu): values pinned


@pytest.mark.parametrize("name", sorted(ARCH))
def test_paper_recipe_runs_end_to_end_on_tiny_model(name: str, tmp_path: Path, golden) -> None:
    recipe = load_recipe(name, _overrides(name))
    raw = _raw(name)
    # the paper's hyperparameters are what ship (the protocol in docs/), and they live in one place:
    # FinetuneConfig's defaults; a recipe states only steps (100 for the instruct setups) and DeepSpeed
    ft = load_recipe(name, _paths(name)).finetune
    assert ft.lr == 2e-6 and ft.warmup_steps == 10 and ft.effective_batch == 8 and ft.batch_size == 1
    assert ft.max_length == 1024 and ft.max_grad_norm == 1.0 and ft.max_epochs == 3 and ft.method == "full"
    assert ft.steps == (100 if "instruct" in name else 1000)
    assert ft.model_dump(exclude={"steps", "deepspeed"}) == FinetuneConfig().model_dump(exclude={"steps", "deepspeed"})
    assert set(_own(name).get("finetune", {})) <= {"steps", "deepspeed"}
    out = tmp_path / "run"
    # the pinned runs take a large learning rate: at 2e-6 for 2 steps Z is ~1e-6, below any useful tolerance
    pin = ["finetune.lr=0.01"] if name in GOLDEN else []
    assert main(["collect", name, "-o", str(out), "-q", *_overrides(name), *pin]) == 0
    m = ForgettingMatrix.load(out / "matrix.npz")
    assert m.shape[0] == len(raw["tasks"])  # one task per source
    assert m.meta["model"] == ARCH[name] and m.kind == recipe.score.metric
    assert set(m.task_groups) <= {"flan", "tulu", "dolly", "mmlu", "bbh", "truthfulqa", "olmo2-sft"}
    if m.kind == "logppl":
        assert m.shape[1] == len(Run.open(out).upstream()) > 0 and np.isfinite(m.Z).all()
    else:  # a random tiny model answers nothing correctly, so no column survives the base-correct filter
        assert 0 < m.meta["n_upstream"] <= 6 and m.shape[1] == m.meta["n_base_correct"]
    if name in GOLDEN:
        assert np.abs(m.Z).mean() > 1e-3  # fine-tuning moved the scores: the pinned values mean something
        golden(name, m)


# ------------------------------------------------------------------------------------ inheritance
def test_recipes_inherit_and_state_only_what_differs() -> None:
    assert _own("olmo-7b") == {"name": "olmo-7b", "description": _own("olmo-7b")["description"],
                               "base": "olmo-1b", "model": {"name": "allenai/OLMo-7B-hf"}}
    assert set(_own("mpt-7b")) == {"name", "description", "base", "model"}
    olmo1, mpt = _raw("olmo-1b"), _raw("mpt-7b")
    # the tasks are formatted as in the OLMo runs: OLMo-Instruct's chat template is inherited
    assert mpt["model"] == {"name": "mosaicml/mpt-7b", "chat_template": "olmo-instruct"} and mpt["name"] == "mpt-7b"
    assert {k: v for k, v in mpt.items() if k not in ("name", "description", "model")} == \
        {k: v for k, v in olmo1.items() if k not in ("name", "description", "model")}
    assert set(_raw("olmo2-13b")["tasks"]) == {"tulu", "dolly"}  # `flan: null` drops the inherited source
    assert _raw("olmo2-13b")["finetune"]["deepspeed"] == "package:deepspeed_zero3.json"
    binary = load_recipe("olmo-7b-instruct-binary", _paths("olmo-7b-instruct-binary"))
    assert binary.score.metric == "binary" and binary.upstream.sources == ["flan_v2"] and binary.finetune.steps == 100
    assert set(_own("replay-demo")) == {"name", "description", "replay"}
    with pytest.raises(LmforgetError, match="is a replay recipe"):
        load_recipe("replay-demo")


def test_base_by_path_overrides_and_errors(tmp_path: Path, capsys) -> None:
    (tmp_path / "parent.yaml").write_text("name: parent\ndescription: p\nbase: tiny\nfinetune: {lr: 0.01}\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "child.yaml").write_text("base: ../parent.yaml\nfinetune: {steps: 3}\nscore: {batch_size: 7}\n")
    r = load_recipe(str(sub / "child.yaml"), ["finetune.warmup_steps=0"])
    tiny = load_recipe("tiny")
    assert r.name == "child" and r.description == ""  # name and description are never inherited
    assert (r.finetune.lr, r.finetune.steps, r.finetune.warmup_steps) == (0.01, 3, 0)
    assert r.score.batch_size == 7 and r.score.max_length == tiny.score.max_length and r.model == tiny.model
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(LmforgetError, match="loops"):
        load_recipe(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("base: no-such-recipe\n")
    with pytest.raises(LmforgetError, match="unknown recipe 'no-such-recipe'"):
        load_recipe(str(tmp_path / "c.yaml"))
    capsys.readouterr()
    assert main(["recipes", "--json"]) == 0  # the listing resolves `base:` too
    listing = {r["name"]: r["model"] for r in json.loads(capsys.readouterr().out)["recipes"]}
    assert listing["olmo-7b"] == "allenai/OLMo-7B-hf" and listing["replay-tiny"] == "(the run's)"
    assert set(listing) == set(shipped_recipes())


@pytest.mark.parametrize(("override", "choices"), [
    ("score.backend=nope", "lmforget.scoring:SCORERS"), ("score.dtype=fp8", "lmforget.models:DTYPES"),
    ("score.metric=nope", "lmforget.matrix:KINDS"), ("executor.kind=nope", "lmforget.executor:KINDS")])
def test_a_closed_set_is_checked_against_its_one_definition(override: str, choices: str) -> None:
    """A recipe's choices are those of the registry or tuple that implements them, not a copy."""
    import importlib

    module, name = choices.split(":")
    listed = ", ".join(getattr(importlib.import_module(module), name))
    key = override.partition("=")[0]
    with pytest.raises(LmforgetError, match=f"bad recipe value '{key}': unknown .*; choose from {listed}$"):
        load_recipe("tiny", [override])
