"""Every shipped paper recipe runs end to end: its model swapped for the tiny config of the same
architecture and its data for fixtures in the same formats; everything else (steps aside) unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from lmforget.cli import main
from lmforget.config import load_recipe, shipped_recipes
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
    collect_recipes = {r for r in shipped_recipes() if not r.startswith("replay")} - {"tiny", "demo"}
    assert sorted(ARCH) == sorted(collect_recipes)


def _raw(name: str) -> dict:
    from importlib import resources

    return yaml.safe_load((resources.files("lmforget.recipes") / f"{name}.yaml").read_text())


def _overrides(name: str) -> list[str]:
    raw = _raw(name)
    ov = [f"model.name={ARCH[name]}", f"upstream.path={DATA[raw['upstream']['format']]}",
          "upstream.n=6", "finetune.steps=2", "finetune.batch_size=8", "finetune.max_length=96", "score.max_length=96",
          "score.max_new_tokens=4", "finetune.deepspeed=null"]
    for source, spec in raw["tasks"].items():
        ov += [f"tasks.{source}.path={DATA[spec['format']]}", f"tasks.{source}.max_tasks=1"]
    return ov


@pytest.mark.parametrize("name", sorted(ARCH))
def test_paper_recipe_runs_end_to_end_on_tiny_model(name: str, tmp_path: Path) -> None:
    recipe = load_recipe(name, _overrides(name))
    raw = _raw(name)
    # the paper's hyperparameters are what ship (PROTOCOL.md section 3)
    ft = raw["finetune"]
    assert ft["lr"] == 2e-6 and ft["warmup_steps"] == 10 and ft["effective_batch"] == 8
    assert ft["max_length"] == 1024 and ft["max_grad_norm"] == 1.0 and ft["max_epochs"] == 3
    assert ft["steps"] == (100 if "instruct" in name else 1000)
    out = tmp_path / "run"
    assert main(["collect", name, "-o", str(out), "-q", *_overrides(name)]) == 0
    m = ForgettingMatrix.load(out / "matrix.npz")
    assert m.shape[0] == len(raw["tasks"])  # one task per source
    assert m.meta["model"] == ARCH[name] and m.kind == recipe.score.metric
    assert set(m.task_groups) <= {"flan", "tulu", "dolly", "mmlu", "bbh", "truthfulqa", "olmo2-sft"}
    if m.kind == "logppl":
        assert m.shape[1] == len(Run.open(out).upstream()) > 0 and np.isfinite(m.Z).all()
    else:  # a random tiny model answers nothing correctly, so no column survives the base-correct filter
        assert 0 < m.meta["n_upstream"] <= 6 and m.shape[1] == m.meta["n_base_correct"]
