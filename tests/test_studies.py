"""The committed study recipes (studies/) are valid and consistent with each other."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmforget.config import load_recipe

STUDY = Path(__file__).resolve().parents[1] / "studies" / "smollm2-ni"
COMMON = STUDY.parent / "common"  # the analysis scripts both studies use


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
    for section in ("model", "upstream", "score"):
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
    assert replay["run"].endswith("runs/replay-run")


def test_replay_run_differs_from_the_matrix_only_by_task_data_and_steps() -> None:
    matrix = load_recipe(str(STUDY / "matrix.yaml"))
    run = load_recipe(str(STUDY / "replay-run.yaml"))
    assert (run.tasks["ni"].n_train, run.finetune.steps) == (192, 48)  # one pass of 4 per step, as the matrix
    assert run.tasks["ni"].model_copy(update={"n_train": 48}) == matrix.tasks["ni"]
    assert run.finetune.model_copy(update={"steps": 12}) == matrix.finetune
    for section in ("model", "upstream", "score"):
        assert getattr(run, section) == getattr(matrix, section), section


def test_wikipedia_recipe_swaps_only_the_upstream_set() -> None:
    matrix = load_recipe(str(STUDY / "matrix.yaml"))
    wiki = load_recipe(str(STUDY / "wikipedia.yaml"))
    assert wiki.upstream.format == "wikipedia" and wiki.upstream.n == 1000 and wiki.upstream.contexts is None
    for section in ("model", "tasks", "finetune", "score"):
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
    assert rows[1]["random_minus_none"] is None  # cells without per-example increases: no paired difference
    # paired over the same held-out examples: a constant shift has zero spread
    none, rnd = cell("none", 48, 0, 0.07), cell("random", 48, 0.5, 0.05)
    none.update(heldout_ids=["a", "b", "c"], heldout_increase=[0.1, 0.0, 0.11])
    rnd.update(heldout_ids=["a", "b", "c"], heldout_increase=[0.08, -0.02, 0.09])
    (row,), _ = sweep.summarize([none, rnd])
    assert row["random_minus_none"] == pytest.approx(-0.02)
    assert row["random_minus_none_sem"] == pytest.approx(0, abs=1e-12)


def _low_rank_matrix(path: Path, noise_sd: float, seed: int, rows: int = 16, cols: int = 160,
                     offset: float = 0.03) -> Path:
    """The first `rows` tasks of one rank-2 forgetting matrix plus Gaussian noise (`seed`), saved as the
    study's scripts read it."""
    import numpy as np

    from lmforget.matrix import ForgettingMatrix

    structure = np.random.default_rng(0)
    Z = (structure.normal(size=(16, 2)) @ structure.normal(size=(2, cols)) * 0.05 + offset)[:rows]
    Z += np.random.default_rng(seed).normal(0, noise_sd, Z.shape)
    m = ForgettingMatrix(Z, [f"task{i}" for i in range(rows)], ["g"] * rows, [f"x{j}" for j in range(cols)],
                         ["wiki"] * cols)
    return m.save(path)


def _script(name: str, *args: str) -> str:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(STUDY.parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    script = COMMON / name if (COMMON / name).is_file() else STUDY / name
    done = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_analyze_script_finds_the_rank_of_a_low_rank_matrix(tmp_path: Path) -> None:
    import json

    z = _low_rank_matrix(tmp_path / "Z.npz", noise_sd=0.002, seed=1, offset=0.0)  # rank 2 (an offset adds one)
    _script("analyze.py", "--matrix", str(z), "--out", str(tmp_path / "out"), "--boot", "20", "--ranks", "4")
    r2 = json.loads((tmp_path / "out" / "r2_bootstrap.json").read_text())["r2"]
    assert r2["rank-1"]["r2"] < 0.99 < r2["rank-2"]["r2"]  # two components explain it, one does not
    assert r2["rank-2"]["ci_low"] <= r2["rank-2"]["r2"] <= r2["rank-2"]["ci_high"]
    assert (tmp_path / "out" / "analysis" / "report.md").is_file()


def test_analyze_script_compares_reconstructions_with_a_replicate(tmp_path: Path) -> None:
    import json

    import numpy as np

    sd = 0.01
    z = _low_rank_matrix(tmp_path / "Z.npz", noise_sd=sd, seed=1, offset=0.0)
    replicate = _low_rank_matrix(tmp_path / "noise.npz", noise_sd=sd, seed=2, rows=5, offset=0.0)
    _script("analyze.py", "--matrix", str(z), "--noise", str(replicate), "--out", str(tmp_path / "out"),
            "--boot", "5", "--ranks", "3")
    noise = json.loads((tmp_path / "out" / "r2_bootstrap.json").read_text())["noise"]
    assert noise["tasks"] == [f"task{i}" for i in range(5)]
    assert noise["noise_sd"] == pytest.approx(sd, rel=0.1)
    rep = noise["replicate_rmse"]
    assert rep["raw"] == pytest.approx(np.sqrt(2) * sd, rel=0.1)  # two noisy measurements
    # the rank-2 truncation keeps the structure and drops most of the noise: close to the noise-free sd
    assert rep["rank-2"] < rep["raw"] and rep["rank-2"] == pytest.approx(sd, rel=0.15)
    assert rep["rank-1"] > rep["rank-2"]  # one component loses structure
    assert noise["n_above_noise_edge"] == 2  # the two real components stand out of the noise
    r2 = json.loads((tmp_path / "out" / "r2_bootstrap.json").read_text())["r2"]
    assert r2["rank-2"]["r2"] == pytest.approx(noise["r2_ceiling"], abs=0.03)


def test_predict_script_beats_colmean_and_reports_the_noise_floor(tmp_path: Path) -> None:
    import json

    z = _low_rank_matrix(tmp_path / "Z.npz", noise_sd=0.004, seed=1)
    replicate = _low_rank_matrix(tmp_path / "noise.npz", noise_sd=0.004, seed=2, rows=5)
    _script("predict.py", "--matrix", str(z), "--noise", str(replicate), "--out", str(tmp_path / "p"), "--seeds", "2")
    result = json.loads((tmp_path / "p" / "prediction.json").read_text())
    fixed = result["fixed"]["30"]
    assert fixed["lowrank"]["rmse_mean"] < fixed["colmean"]["rmse_mean"]
    assert (tmp_path / "p" / "rmse_vs_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # two measurements with independent noise sd 0.004 differ by sd 0.004 x sqrt(2)
    assert result["noise"]["replicate_rmse"] == pytest.approx(0.004 * 2 ** 0.5, rel=0.15)
    assert "replicate RMSE" in (tmp_path / "p" / "prediction.md").read_text()


def test_predict_script_leaves_out_a_noise_run_that_has_not_finished(tmp_path: Path) -> None:
    """The noise run collects in the background for hours: until its matrix.npz is written (as analyze.py
    reads it), prediction runs without the noise floor and says so, instead of failing on its open rows."""
    import json

    z = _low_rank_matrix(tmp_path / "Z.npz", noise_sd=0.004, seed=1)
    runs = tmp_path / "runs"
    (runs / "noise").mkdir(parents=True)
    (runs / "noise" / "manifest.json").write_text("{}")  # started, never finished: never opened
    out = _script("predict.py", "--matrix", str(z), "--runs", str(runs), "--out", str(tmp_path / "p"), "--seeds", "1")
    assert "noise has not finished: no noise floor this time" in out
    assert json.loads((tmp_path / "p" / "prediction.json").read_text())["noise"] is None
    assert "n/a (noise run not finished)" in (tmp_path / "p" / "prediction.md").read_text()


def test_report_assembles_finished_parts_and_names_the_missing_ones(tmp_path: Path) -> None:
    import json

    z = _low_rank_matrix(tmp_path / "Z.npz", noise_sd=0.004, seed=1)
    replicate = _low_rank_matrix(tmp_path / "noise.npz", noise_sd=0.004, seed=2, rows=5)
    results, runs = tmp_path / "results", tmp_path / "runs"
    _script("analyze.py", "--matrix", str(z), "--noise", str(replicate), "--out", str(results), "--boot", "5")
    _script("predict.py", "--matrix", str(z), "--noise", str(replicate), "--out", str(results / "prediction"),
            "--seeds", "2")
    out = _script("report.py", "--runs", str(runs), "--results", str(results))
    report = (results / "report.md").read_text()
    assert report.strip() == out.strip()
    r2 = json.loads((results / "r2_bootstrap.json").read_text())
    assert f"| rank-2 | {r2['r2']['rank-2']['r2']:.3f} |" in report
    assert "| lowrank |" in report and "Noise ceiling" in report
    assert report.count("Not run yet.") == 2  # the sweep and the replay run's matrix
    assert "## Replay study\n\nNot finished yet (0 of 72 cells finished)." in report  # replay.yaml: 12 x 6
    saved = json.loads((results / "results.json").read_text())
    assert set(saved) == {"matrix", "prediction"}
    # a finished part's own report is included under the part's title, its headings one level down
    (runs / "sweep").mkdir(parents=True)
    (runs / "sweep" / "summary.md").write_text("# Replay regime sweep\n\nmeasured text\n\n## by task\n")
    report = _script("report.py", "--runs", str(runs), "--results", str(results))
    assert "## Replay regime sweep\n\nmeasured text\n\n### by task\n" in report
    assert report.count("Not run yet.") == 1


def test_analyze_script_compares_two_runs_of_the_same_tasks(tmp_path: Path) -> None:
    import json

    import numpy as np

    from lmforget.matrix import ForgettingMatrix

    z = _low_rank_matrix(tmp_path / "Z.npz", noise_sd=0.002, seed=1)
    m = ForgettingMatrix.load(z)
    # the same structure, three times as strong
    longer = ForgettingMatrix(m.Z * 3.0, m.tasks, m.task_groups, m.examples, m.example_sources)
    longer.save(tmp_path / "longer.npz")
    _script("analyze.py", "--matrix", str(tmp_path / "longer.npz"), "--compare", str(z),
            "--out", str(tmp_path / "out"), "--boot", "5", "--ranks", "3")
    result = json.loads((tmp_path / "out" / "r2_bootstrap.json").read_text())
    cmp = result["compare"]
    assert cmp["other"] == "Z" and cmp["tasks"] == [f"task{i}" for i in range(16)] and cmp["n_columns"] == 160
    assert cmp["mean_ratio"] == pytest.approx(3.0)
    assert cmp["pearson"] == pytest.approx(1.0) and cmp["row_pearson"]["min"] == pytest.approx(1.0)
    # an unrelated matrix of the same shape agrees by chance only
    rng = np.random.default_rng(5)
    ForgettingMatrix(rng.normal(0.03, 0.01, m.Z.shape), m.tasks, m.task_groups, m.examples, m.example_sources).save(
        tmp_path / "other.npz")
    _script("analyze.py", "--matrix", str(z), "--compare", str(tmp_path / "other.npz"),
            "--out", str(tmp_path / "out2"), "--boot", "5", "--ranks", "3")
    cmp = json.loads((tmp_path / "out2" / "r2_bootstrap.json").read_text())["compare"]
    assert abs(cmp["pearson"]) < 0.1 and abs(cmp["column_mean_pearson"]) < 0.3
    assert "Against the other run (16 shared tasks" in (tmp_path / "out2" / "r2_bootstrap.md").read_text()


def _study2_report():
    import importlib.util

    path = STUDY.parent / "smollm2-evals" / "report.py"
    spec = importlib.util.spec_from_file_location("study2_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study2_select_rule_picks_least_forgetting_among_settings_keeping_95_percent() -> None:
    report = _study2_report()
    forgetting = {"none": 0.10, "l2-sp@0.1": 0.08, "l2-sp@1": 0.05, "l2-sp@10": 0.01,
                  "wise-ft@0.25": 0.01, "wise-ft@0.5": 0.03, "wise-ft@0.75": 0.07}
    gain = {"none": 1.0, "l2-sp@0.1": 0.99, "l2-sp@1": 0.96, "l2-sp@10": 0.5,
            "wise-ft@0.25": 0.3, "wise-ft@0.5": 0.94, "wise-ft@0.75": 0.97}
    results = {"methods": {m: {"mean_increase": f, "reduction_vs_none": 1 - f / 0.1} for m, f in forgetting.items()},
               "task_gain": {"methods": {m: {"mean_gain": g} for m, g in gain.items()}}}
    assert report.choose(results, "l2-sp")["chosen"] == "l2-sp@1"  # l2-sp@10 forgets least but keeps 50%
    wise = report.choose(results, "wise-ft")
    assert wise["chosen"] == "wise-ft@0.75" and wise["kept_95"]
    gain.update({"wise-ft@0.75": 0.9})  # none keeps 95%: the one that keeps the most
    results["task_gain"]["methods"]["wise-ft@0.75"]["mean_gain"] = 0.9
    wise = report.choose(results, "wise-ft")
    assert wise["chosen"] == "wise-ft@0.5" and not wise["kept_95"]
    assert [report.setting_value("kl-weight", n) for n in
            ("kl-random", "kl-random+kl-weight@10", "kl-oracle+kl-weight@10", "kl-random+kl-weight@10+wise-ft@0.5",
             "random", "l2-sp@10")] == [1.0, 10.0, None, None, None, None]
    assert report.setting_value("l2-sp", "l2-sp@10") == 10.0 and report.setting_value("l2-sp", "wise-ft@0.5") is None


def test_study2_select_section_adds_the_chosen_kl_weight_only_when_it_is_not_1() -> None:
    report = _study2_report()
    forgetting = {"none": 0.10, "l2-sp@1": 0.05, "wise-ft@0.5": 0.03, "kl-random": 0.07,
                  "kl-random+kl-weight@10": 0.02}
    gain = {"none": 1.0, "l2-sp@1": 0.96, "wise-ft@0.5": 0.97, "kl-random": 1.0, "kl-random+kl-weight@10": 0.98}

    def select(gains: dict) -> dict:
        return {"complete": True, "tasks": ["a"],
                "methods": {m: {"mean_increase": f, "reduction_vs_none": 1 - f / 0.1} for m, f in forgetting.items()},
                "task_gain": {"methods": {m: {"mean_gain": g, "per_task": {"a": g}} for m, g in gains.items()}}}

    lines, chosen = report.select_section(select(gain))
    assert chosen["chosen"]["kl-weight"] == "kl-random+kl-weight@10"
    assert chosen["methods"] == ["l2-sp@1", "kl-random+kl-weight@10", "kl-random+wise-ft@0.5"]
    assert any(line.startswith("| kl-random+kl-weight@10 (chosen) |") for line in lines)
    _, chosen = report.select_section(select({**gain, "kl-random+kl-weight@10": 0.9}))  # keeps < 95%
    assert chosen["chosen"]["kl-weight"] == "kl-random" and "kl-random" not in chosen["methods"]


def test_study2_goal_check_needs_both_the_cut_and_the_gain_significant() -> None:
    import numpy as np

    report = _study2_report()
    tasks = [f"t{i}" for i in range(12)]
    rng = np.random.default_rng(0)
    f_none = rng.uniform(0.08, 0.12, 12)
    g_none = rng.uniform(0.9, 1.1, 12)
    per = {"none": (f_none, g_none), "good": (0.05 * f_none, g_none * 1.0),
           "learns_less": (0.05 * f_none, g_none * 0.5), "cuts_half": (0.5 * f_none, g_none)}
    results = {"methods": {m: {"per_task": dict(zip(tasks, f.tolist(), strict=True))} for m, (f, _) in per.items()},
               "task_gain": {"tasks": tasks, "methods": {m: {"per_task": dict(zip(tasks, g.tolist(), strict=True))}
                                                         for m, (_, g) in per.items()}}}
    goal = report.goal_check(results)["methods"]
    assert goal["good"]["met"] and goal["good"]["reduction_vs_none"] == pytest.approx(0.95)
    assert not goal["learns_less"]["met"] and goal["learns_less"]["kept"] == pytest.approx(0.5)
    assert goal["learns_less"]["median_task_kept"] == pytest.approx(0.5)
    assert "| learns_less | 95.0% | 50.0% | 50.0% |" in "\n".join(report.goal_lines(report.goal_check(results)))
    assert not goal["cuts_half"]["met"]
    # the same check on exact-match gain, over the tasks where it was measured (short answers only)
    results["task_em_gain"] = {"tasks": tasks[:6], "methods": {
        "none": {"per_task": dict.fromkeys(tasks[:6], 0.2)},
        "good": {"per_task": dict(zip(tasks[:6], [0.1, 0.12, 0.08, 0.1, 0.11, 0.09], strict=True))}}}
    em = report.goal_check(results, "task_em_gain")
    assert em["tasks"] == tasks[:6] and list(em["methods"]) == ["good"]
    assert em["methods"]["good"]["kept"] == pytest.approx(0.5) and not em["methods"]["good"]["met"]
    assert "exact-match increase" in report.goal_lines(em)[0]
    assert not any("exploratory" in line for line in report.goal_lines(em))
    # arms added after an interim look are marked as exploratory in the goal table
    results["methods"]["kl-random+wise-ft@0.5"] = results["methods"]["good"]
    results["task_gain"]["methods"]["kl-random+wise-ft@0.5"] = results["task_gain"]["methods"]["good"]
    text = "\n".join(report.goal_lines(report.goal_check(results)))
    assert "| kl-random+wise-ft@0.5 (exploratory) | 95.0% |" in text and "| good | 95.0% |" in text
    assert "Exploratory, added after the 6-task interim: kl-random+wise-ft@0.5." in text


def test_study2_kl_budget_compares_33_with_129_replayed_examples_per_task() -> None:
    report = _study2_report()
    tasks = ["a", "b", "c", "d"]
    per = {"none": [0.10, 0.12, 0.08, 0.11], "kl-random": [0.02, 0.03, 0.02, 0.02]}
    replay = {"tasks": tasks, "methods": {m: {"per_task": dict(zip(tasks, v, strict=True))} for m, v in per.items()},
              "task_gain": {"methods": {m: {"per_task": dict.fromkeys(tasks, 1.0)} for m in per}}}
    fewer = {"tasks": tasks[:3], "methods": {"kl-random": {"per_task": {"a": 0.04, "b": 0.05, "c": 0.03}}},
             "task_gain": {"methods": {"kl-random": {"per_task": dict.fromkeys(tasks[:3], 1.1)}}}}
    check = report.budget_check(replay, fewer)
    assert check["tasks"] == ["a", "b", "c"]  # only tasks both studies finished
    assert check["forgetting"]["kl-random@33"] == pytest.approx(0.04)
    assert check["forgetting"]["none"] == pytest.approx(0.10)
    assert check["33_vs_129"]["mean_difference"] == pytest.approx(0.04 - 0.07 / 3)
    assert check["33_vs_129"]["wins"] == 0 and check["gain"]["kl-random@33"] == pytest.approx(1.1)
    assert "| kl-random@33 | +0.0400 | 60.0% | 1.100 |" in report.budget_lines(check)


def test_study2_targeting_pairs_each_targeted_arm_with_random_replay_of_its_objective() -> None:
    report = _study2_report()
    tasks = ["a", "b", "c", "d", "e"]
    forget = {"random": [0.06, 0.05, 0.07, 0.06, 0.05], "oracle": [0.061, 0.052, 0.069, 0.062, 0.051],
              "kl-random": [0.03, 0.02, 0.03, 0.04, 0.03], "kl-oracle": [0.025, 0.018, 0.026, 0.033, 0.027]}
    results = {"methods": {m: {"per_task": dict(zip(tasks, v, strict=True))} for m, v in forget.items()},
               "task_gain": {"methods": {m: {"per_task": dict.fromkeys(tasks, 1.0)} for m in forget}}}
    results["task_gain"]["methods"]["kl-oracle"]["per_task"]["a"] = 0.9
    results["task_gain"]["methods"]["oracle"]["per_task"]["e"] = None  # not measured: left out of the pair
    check = report.targeting_check(results)
    assert list(check) == ["oracle vs random", "kl-oracle vs kl-random"]
    kl = check["kl-oracle vs kl-random"]["forgetting"]
    assert kl["wins"] == 5 and kl["mean_difference"] == pytest.approx(-0.0042)
    assert kl["b"] == pytest.approx(0.03) and kl["ci"][1] < 0 and kl["t_p"] < 0.05
    assert check["oracle vs random"]["forgetting"]["wins"] == 1  # oracle lower than random on task c only
    assert check["oracle vs random"]["task_gain"]["tasks"] == tasks[:4]
    gain = check["kl-oracle vs kl-random"]["task_gain"]
    assert gain["mean_difference"] == pytest.approx(-0.02) and gain["a"] == pytest.approx(0.98)
    text = "\n".join(report.targeting_lines(check))
    assert "| kl-oracle vs kl-random | forgetting | 5 | +0.0258 | +0.0300 | -0.0042 [" in text
    # a study without the KL arms still reports next-token targeting; one without any pair reports none
    del results["methods"]["kl-oracle"]
    assert list(report.targeting_check(results)) == ["oracle vs random"]
    assert report.targeting_check({"methods": {"random": results["methods"]["random"]}}) is None


def test_study2_pairs_kl_replay_with_wise_ft_at_each_alpha_both_were_scored_at() -> None:
    report = _study2_report()
    tasks = ["a", "b", "c", "d"]
    forget = {"none": [0.06, 0.05, 0.07, 0.06], "kl-random": [0.03, 0.02, 0.03, 0.04],
              "wise-ft@0.25": [0.004, 0.003, 0.005, 0.004], "wise-ft@0.5": [0.015, 0.012, 0.02, 0.016],
              "kl-random+wise-ft@0.25": [0.002, 0.002, 0.003, 0.002]}
    results = {"methods": {m: {"per_task": dict(zip(tasks, v, strict=True))} for m, v in forget.items()},
               "task_gain": {"methods": {m: {"per_task": dict.fromkeys(tasks, 1.0)} for m in forget}}}
    check = report.combine_check(results)
    # alpha 0.5 has no KL cell: left out; alpha 1 is the arms themselves
    assert list(check) == ["kl-random+wise-ft@0.25 vs wise-ft@0.25", "kl-random vs none"]
    low = check["kl-random+wise-ft@0.25 vs wise-ft@0.25"]["forgetting"]
    assert low["mean_difference"] == pytest.approx(-0.00175) and low["wins"] == 4 and low["n"] == 4
    text = "\n".join(report.combine_lines(check))
    assert "| KL replay | no replay |" in text and "| kl-random vs none | forgetting | 4 | +0.0300 | +0.0600 |" in text
    assert report.combine_check({"methods": {"none": results["methods"]["none"]}}) is None


def test_study2_compares_replay_without_the_task_under_both_objectives() -> None:
    report = _study2_report()
    tasks = ["a", "b", "c"]
    forget = {"none": [0.04, 0.09, 0.05], "kl-replay-only": [0.10, 0.09, 0.11], "replay-only": [0.19, 0.19, 0.18]}
    results = {"methods": {m: {"per_task": dict(zip(tasks, v, strict=True))} for m, v in forget.items()},
               "task_gain": {"methods": {m: {"per_task": dict.fromkeys(tasks, 0.1)} for m in forget}}}
    check = report.paired_arms(results, report.CONTROLS)
    assert list(check) == ["kl-replay-only vs replay-only", "replay-only vs none", "kl-replay-only vs none"]
    kl = check["kl-replay-only vs replay-only"]["forgetting"]
    assert kl["mean_difference"] == pytest.approx(-0.0867, abs=1e-4) and kl["wins"] == 3 and kl["n"] == 3
    assert "## Replay without the task" in report.pair_lines(check, **report.CONTROL_SECTION)[0]
    del results["methods"]["replay-only"]  # not run yet: only the pair that has both arms
    assert list(report.paired_arms(results, report.CONTROLS)) == ["kl-replay-only vs none"]
    assert "Not measured yet" in "\n".join(report.pair_lines(None, **report.CONTROL_SECTION))
