"""The committed study recipes (studies/) are valid and consistent with each other."""

from __future__ import annotations

from pathlib import Path

import yaml

from lmforget.config import load_recipe

STUDY = Path(__file__).resolve().parents[1] / "studies" / "smollm2-ni"


def test_matrix_and_noise_recipes_differ_only_by_seed_and_tasks() -> None:
    matrix = load_recipe(str(STUDY / "matrix.yaml"))
    noise = load_recipe(str(STUDY / "noise.yaml"))
    tasks = matrix.tasks["ni"].tasks
    assert len(tasks) >= 40 and len(set(tasks)) == len(tasks)
    assert matrix.upstream.format == "self-sampled" and matrix.upstream.new_tokens == 48
    assert matrix.upstream.contexts.n >= 1000
    assert len(noise.tasks["ni"].tasks) >= 5 and set(noise.tasks["ni"].tasks) <= set(tasks)
    assert noise.finetune.seed != matrix.finetune.seed
    assert noise.finetune.model_copy(update={"seed": matrix.finetune.seed}) == matrix.finetune
    for section in ("model", "upstream", "score", "seed"):
        assert getattr(noise, section) == getattr(matrix, section), section
    assert noise.tasks["ni"].model_copy(update={"tasks": tasks}) == matrix.tasks["ni"]


def test_replay_recipe_splits_the_matrix_tasks() -> None:
    tasks = set(load_recipe(str(STUDY / "matrix.yaml")).tasks["ni"].tasks)
    from lmforget.config import ReplayConfig

    data = yaml.safe_load((STUDY / "replay.yaml").read_text())
    assert set(data) == {"name", "description", "replay"}  # the rest comes from the run
    ReplayConfig.model_validate(data["replay"])
    replay = data["replay"]
    test, train = replay["test_tasks"], replay["train_tasks"]
    assert len(test) >= 12 and not set(test) & set(train) and set(test) | set(train) == tasks
    assert replay["heldout"] >= 300
    assert {"none", "random", "oracle", "offline-mf", "online-mf", "replay-only"} <= set(replay["methods"])


def test_wikipedia_recipe_swaps_only_the_upstream_set() -> None:
    matrix = load_recipe(str(STUDY / "matrix.yaml"))
    wiki = load_recipe(str(STUDY / "wikipedia.yaml"))
    assert wiki.upstream.format == "wikipedia" and wiki.upstream.n == 1000 and wiki.upstream.contexts is None
    for section in ("model", "tasks", "finetune", "score", "seed"):
        assert getattr(wiki, section) == getattr(matrix, section), section


def test_sweep_pairs_each_replay_rate_with_its_none_cell() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("sweep", STUDY / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    assert sweep.cell_name("t", 1e-4, 48, "none", 0.0) == sweep.cell_name("t", 1e-4, 48, "none", 0.5)
    assert sweep.cell_name("t", 1e-4, 48, "random", 0.1667) != sweep.cell_name("t", 1e-4, 48, "random", 0.6667)

    def cell(arm, n, rate, inc):
        return {"task": "t", "lr": 1e-4, "n_task": n, "arm": arm, "rate": rate, "n_rep": int(n * rate) + 1,
                "heldout_mean_increase": inc, "heldout_sem": 0.01, "replay_token_share": 0.3}

    rows, md = sweep.summarize([cell("none", 48, 0, 0.07), cell("random", 48, 0.6667, 0.03),
                                cell("random", 48, 0.1667, 0.10), cell("random", 48, 0.9, -0.02),
                                cell("random", 192, 0.5, 0.01)])
    assert [(r["n_task"], r["rate"], r["restores"]) for r in rows] == [
        (48, 0.1667, False), (48, 0.6667, True), (48, 0.9, False), (192, 0.5, False)]  # 192 has no none cell yet
    assert rows[1]["none"] == 0.07 and rows[3]["none"] is None
    assert md.count("\n| t |") == 4
