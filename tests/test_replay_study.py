"""The replay study and `replay-set` end to end on the tiny model, and their bad-input errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmforget.cli import main
from lmforget.errors import LmforgetError
from lmforget.probe import Probe, write_probe
from lmforget.runs import Run

METHODS = "none,random,oracle,online-additive,replay-only"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from lmforget.collect import collect
    from lmforget.config import load_recipe

    out = tmp_path_factory.mktemp("replay") / "tiny-run"
    collect(load_recipe("tiny"), out, progress=False)
    return out


@pytest.fixture(scope="module")
def study(tiny_run: Path, tmp_path_factory) -> tuple[Path, list[str]]:
    """The study, made while `lmforget.collect` cannot be imported: a replay cell fine-tunes and scores
    without the collect orchestrator (scoring lives in lmforget.scoring)."""
    import sys

    out = tmp_path_factory.mktemp("replay") / "study"
    args = ["replay", "replay-tiny", f"replay.run={tiny_run}", "replay.test_tasks=[add_numbers]",
            "-o", str(out), "--methods", METHODS, "-q"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "lmforget.collect", None)  # any `import lmforget.collect` now fails
        assert main(args) == 0
    return out, args


def test_study_writes_every_number(study) -> None:
    out, _ = study
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"] == ["add_numbers"] and list(results["methods"]) == METHODS.split(",")
    assert results["n_heldout"] == 24 and results["n_pool"] == 24
    from lmforget.workdir import cell_file

    for name, m in results["methods"].items():
        assert math.isfinite(m["mean_increase"])
        cell = pd.read_parquet(cell_file(out, "add_numbers", name, ".parquet"))  # the cell's held-out scores
        assert len(cell) == 24 and m["per_task"]["add_numbers"] == pytest.approx(np.nanmean(cell["increase"]))
        assert "reduction_vs_none" in m and "reduction_vs_random" in m
    assert "vs_random" in results["methods"]["oracle"]  # paired tests (undefined with a single task)
    cells = [c for c in results["cells"] if c["method"] == "none"]
    assert results["run_heldout_mean_increase"] == pytest.approx(np.mean([c["run_heldout_mean_increase"]
                                                                          for c in cells]))
    run = Run.open(results["run"]).matrix()  # the run's row of the task, over the held-out ids the cell scored
    ids = pd.read_parquet(cell_file(out, "add_numbers", "none", ".parquet"))["id"].tolist()
    cols = [run.examples.tolist().index(i) for i in ids]
    assert cells[0]["run_heldout_mean_increase"] == pytest.approx(np.nanmean(run.Z[run.rows(["add_numbers"])[0], cols]))
    # results.json holds each cell's numbers; its lists (replay set, learning rates) stay in the cell's record
    assert all(not set(c) & {"replay", "replay_trained", "learning_rates"} for c in results["cells"])
    records = [json.loads(cell_file(out, c["task"], c["method"], ".json").read_text()) for c in results["cells"]]
    assert [{k: v for k, v in r.items() if k in c} for r, c in zip(records, results["cells"], strict=True)] \
        == results["cells"]
    for c in records:  # what training read: every slot once, so the picks, except online's early slots
        slots = {r["id"] for r in c["replay"]}
        if c["source"] == "online":
            assert c["n_chosen_trained"] == len(slots & set(c["replay_trained"])) <= c["n_rep"]
            assert set(c["replay_trained"]) <= slots | set(c["initial_replay"])
        else:
            assert set(c["replay_trained"]) == slots and len(c["replay_trained"]) == c["n_rep"]
    q = results["by_run_quartile"]  # per method, the held-out increase by quartile of the run's row
    ids = pd.read_parquet(cell_file(out, "add_numbers", "random", ".parquet"))["id"].tolist()
    ref = run.Z[run.rows(["add_numbers"])[0], [run.examples.tolist().index(i) for i in ids]]
    inc = pd.read_parquet(cell_file(out, "add_numbers", "random", ".parquet"))["increase"].to_numpy()
    top = np.argsort(ref, kind="stable")[-len(ids) // 4:]  # 24 held-out, all defined: 6 per bin
    assert q["methods"]["random"][3] == pytest.approx(inc[top].mean())
    report = (out / "report.md").read_text()
    assert "paired t-test p" in report and "Wilcoxon" in report and "Where replay acts" in report
    assert "previous run's rows on the same held-out examples" in report
    assert (out / "figure.png").stat().st_size > 10_000


def test_mixtures_follow_the_formula_and_never_hold_heldout(study, tiny_run: Path) -> None:
    from lmforget.replay.heldout import split_heldout
    from lmforget.workdir import cell_file

    out, _ = study
    results = json.loads((out / "results.json").read_text())
    ids = Run.open(tiny_run).upstream().ids
    heldout = set(split_heldout(ids, 24, seed=0).heldout_ids)
    scored = pd.read_parquet(next((out / "results").rglob("oracle.parquet")))
    assert set(scored["id"]) == heldout  # the evaluation set is the held-out set
    cells = {c["method"]: json.loads(cell_file(out, c["task"], c["method"], ".json").read_text())
             for c in results["cells"]}  # the full records, with their replay sets
    for name, cell in cells.items():
        n_task = cells["random"]["n_task"] if name == "replay-only" else cell["n_task"]  # random's budget
        replayed = [r["id"] for r in cell["replay"]] + cell.get("initial_replay", [])
        assert not set(replayed) & heldout
        if name == "none":
            assert cell["n_rep"] == 0 and cell["steps"] == 4  # finetune.steps, not stretched
        else:
            assert cell["n_rep"] == math.floor(n_task * 0.125) + 1 == len(cell["replay"])
            assert cell["steps"] == math.ceil(4 * (1 + 0.125)) == cell["trained_steps"]
            assert len({r["id"] for r in cell["replay"]}) == cell["n_rep"]
        assert cell["loss_weighting"] == "token"
        if cell["n_rep"]:
            assert 0 < cell["replay_loss_share"] == cell["replay_token_share"] <= 1
    only = cells["replay-only"]
    assert only["n_task"] == 0 and only["replay_token_share"] == 1.0 and only["steps"] == cells["random"]["steps"]
    assert [r["id"] for r in only["replay"]] == [r["id"] for r in cells["random"]["replay"]]
    assert 0 < cells["random"]["replay_token_share"] < 1
    # the online probes are never replayed, by any method
    from lmforget.replay.heldout import draw_probes

    base = Run.open(tiny_run).base_scores()["nll"].to_numpy()
    probes = {ids[c] for c in draw_probes(split_heldout(ids, 24, seed=0), 8, 0, np.isfinite(base))}
    for cell in cells.values():
        assert not probes & ({r["id"] for r in cell["replay"]} | set(cell.get("initial_replay", [])))
    assert "vs_zero" in results["methods"]["random"] and "ci" in results["methods"]["oracle"]["vs_random"]
    online = cells["online-additive"]
    assert online["switch_step"] == 1 and online["initial_replay"] == [r["id"] for r in cells["random"]["replay"]]
    assert online["learning_rates"] == pytest.approx(cells["random"]["learning_rates"])
    # oracle scores are the run's true row
    row = Run.open(tiny_run).matrix().Z[0]
    by_id = dict(zip(ids, row, strict=True))
    for r in cells["oracle"]["replay"]:
        assert r["score"] == pytest.approx(by_id[r["id"]], abs=1e-6)


def test_kl_replay_combines_with_offline_and_online_selection(study, tiny_run: Path, tmp_path: Path) -> None:
    """KL replay trains whatever a selection strategy picks: offline completion's examples, and online's
    swapped-in ones (whose base targets must exist: the mixture refuses a replay example without them)."""
    from lmforget.workdir import cell_file

    ref = {m: json.loads(cell_file(study[0], "add_numbers", m, ".json").read_text())
           for m in ("random", "online-additive")}
    out = tmp_path / "kl"
    assert main(["replay", "replay-tiny", f"replay.run={tiny_run}", "replay.test_tasks=[add_numbers]", "-o", str(out),
                 "--methods", "offline-additive,kl-offline-additive,kl-online-additive", "-q"]) == 0
    cells = {m: json.loads(cell_file(out, "add_numbers", m, ".json").read_text())
             for m in ("offline-additive", "kl-offline-additive", "kl-online-additive")}
    nll, kl, online = cells["offline-additive"], cells["kl-offline-additive"], cells["kl-online-additive"]
    assert (nll["objective"], kl["objective"], online["objective"]) == ("nll", "kl", "kl")
    assert kl["replay"] == nll["replay"] and kl["revealed"] == nll["revealed"]  # same picks, other loss
    assert kl["heldout_mean_increase"] != nll["heldout_mean_increase"] and kl["kl_top_k"] == 256
    # online: random's examples first, the predicted ones after the switch, trained under KL
    assert online["initial_replay"] == [r["id"] for r in ref["random"]["replay"]]
    assert online["switch_step"] == ref["online-additive"]["switch_step"] and online["n_chosen_trained"] > 0
    assert {r["id"] for r in online["replay"]} & set(online["replay_trained"])


def test_study_resumes_and_refuses_other_settings(study, capsys) -> None:
    out, args = study
    cells = sorted((out / "results").rglob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in cells]
    assert main(args) == 0  # everything done: no cell is run again
    assert [p.stat().st_mtime_ns for p in cells] == stamps
    assert main(args[:2] + ["finetune.batch_size=1", "score.batch_size=5"] + args[2:]) == 0  # batching only
    assert [p.stat().st_mtime_ns for p in cells] == stamps
    capsys.readouterr()
    assert main(args[:2] + ["replay.rate=0.25"] + args[2:]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different replay" in err[0]


def test_status_of_a_study_lists_its_cells(study, capsys) -> None:
    from lmforget.status import run_status

    out, _ = study
    st = run_status(out)
    assert st["kind"] == "replay" and st["methods"] == METHODS.split(",")
    assert st["counts"] == {"finished": 5, "running": 0, "failed": 0, "pending": 0} and st["eta_seconds"] == 0
    assert st["driver_running"] is False and all(c["seconds"] > 0 for c in st["cells"])
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().err  # tables go to stderr, --json to stdout
    assert "online-additive" in text and "5 finished" in text and "no replay running" in text


def test_status_eta_counts_a_training_shared_by_wise_ft_arms_once() -> None:
    """WiSE-FT cells record the seconds since their unit started (the training included): the ETA must
    count each unit once, else a study with three alphas per arm looks twice as long as it is."""
    from lmforget.replay.methods import trained_as
    from lmforget.status import _summary

    methods = ["none", "wise-ft@0.25", "wise-ft@0.5", "kl-random", "kl-random+wise-ft@0.25"]
    seconds = {"none": 100.0, "wise-ft@0.25": 110.0, "wise-ft@0.5": 120.0, "kl-random": 200.0,
               "kl-random+wise-ft@0.25": 220.0}
    entries, groups = [], []
    for task, state in (("a", "finished"), ("b", "pending")):
        for m in methods:
            entries.append({"state": state, **({"seconds": seconds[m]} if state == "finished" else {})})
            groups.append(f"{task}/{trained_as(m)}")
    counts, mean, eta = _summary(entries, live=True, groups=groups)
    assert counts["pending"] == 5 and mean == pytest.approx(150.0)
    assert eta == pytest.approx(2 * 170.0)  # task b's two units, each as long as task a's mean unit (170 s)
    # b's none unit running for 50 s on one worker: what is left of it, then b's kl-random unit
    entries[5] = entries[6] = entries[7] = {"state": "running", "running_for": 50.0}
    assert _summary(entries, live=True, groups=groups)[2] == pytest.approx((170.0 - 50.0 + 170.0) / 1)
    # without groups every entry is its own unit (a run's tasks): the old per-entry estimate
    assert _summary(entries[:5] + [{"state": "pending"}], live=True)[2] == pytest.approx(150.0)


def test_status_writes_long_etas_in_hours_and_minutes() -> None:
    from lmforget.cli.collect import _duration

    assert _duration(29592) == "29592 s (8.2 h)" and _duration(750) == "750 s (12 min)" and _duration(40) == "40 s"


def test_status_names_a_corrupt_cell_record_instead_of_counting_it_finished(study, tmp_path: Path, capsys) -> None:
    import shutil

    from lmforget.status import run_status
    from lmforget.workdir import cell_file

    out = tmp_path / "study"
    shutil.copytree(study[0], out)
    record = cell_file(out, "add_numbers", "random", ".json")
    record.write_text('{"method": "random", "seconds": ', encoding="utf-8")  # not JSON
    with pytest.raises(LmforgetError, match=f"{record}: not a readable cell record"):
        run_status(out)
    capsys.readouterr()
    assert main(["status", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a readable cell record" in err and len(err.strip().splitlines()) == 1


def test_failed_cell_is_recorded_interim_report_and_a_rerun_retries_only_it(tiny_run: Path, tmp_path: Path,
                                                                            monkeypatch, capsys) -> None:
    import lmforget.replay.study as study_mod
    from lmforget.status import run_status
    from lmforget.workdir import cell_file

    out = tmp_path / "s"
    args = ["replay", "replay-tiny", f"replay.run={tiny_run}", "-o", str(out), "--methods", "none,random", "-q"]
    assert main(args + ["--report-only"]) == 2  # nothing to report yet
    assert not out.exists()
    real_cells, real_write = study_mod.run_cells, study_mod.write_cell
    snapshots: list[dict] = []  # `lmforget status` read while the study runs, before a cell is written

    def run_cells(study, task, methods, progress=True):
        if (task, methods[0].name) == ("opposites", "random"):
            raise RuntimeError("out of memory (simulated)")
        return real_cells(study, task, methods, progress)

    def write_cell(study, *a):
        snapshots.append(run_status(study.out))
        real_write(study, *a)

    monkeypatch.setattr(study_mod, "run_cells", run_cells)
    monkeypatch.setattr(study_mod, "write_cell", write_cell)
    capsys.readouterr()
    assert main(args) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("lmforget: error: 1 replay cell(s) failed: opposites / random") and "out of memory" in last
    assert len(snapshots) == 3 and all(s["driver_running"] for s in snapshots)
    assert snapshots[0]["counts"] == {"finished": 0, "running": 1, "failed": 0, "pending": 3}
    assert snapshots[2]["counts"] == {"finished": 2, "running": 1, "failed": 0, "pending": 1}
    st = run_status(out)
    assert st["counts"] == {"finished": 3, "running": 0, "failed": 1, "pending": 0} and not st["driver_running"]
    [failed] = [c for c in st["cells"] if c["state"] == "failed"]
    assert (failed["task"], failed["method"]) == ("opposites", "random") and "out of memory" in failed["error"]
    error_file = cell_file(out, "opposites", "random", ".error.json")
    assert "Traceback" in json.loads(error_file.read_text())["traceback"]

    # an interim report covers the one task whose methods all finished, and says so
    assert main(args + ["--report-only"]) == 0
    interim = json.loads((out / "results.json").read_text())
    assert interim["tasks"] == ["add_numbers"] and interim["n_test_tasks"] == 2 and interim["complete"] is False
    assert "Interim report: 1 of 2 test tasks" in (out / "report.md").read_text()
    assert main(args[:2] + ["replay.rate=0.25"] + args[2:] + ["--report-only"]) == 2  # other settings: refused

    done = cell_file(out, "add_numbers", "none", ".json")
    stamp = done.stat().st_mtime_ns
    monkeypatch.setattr(study_mod, "run_cells", real_cells)
    assert main(args) == 0
    assert not error_file.exists() and done.stat().st_mtime_ns == stamp  # only the failed cell ran again
    assert run_status(out)["counts"] == {"finished": 4, "running": 0, "failed": 0, "pending": 0}
    final = json.loads((out / "results.json").read_text())
    assert final["tasks"] == ["add_numbers", "opposites"] and final["complete"] is True
    assert "Interim" not in (out / "report.md").read_text()


def _fails(args: list[str], capsys, match: str, out: Path) -> None:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lmforget: error:") and match in err[0], err
    assert not out.exists()


def test_study_bad_input(tiny_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "s"
    base = ["replay", "replay-tiny", f"replay.run={tiny_run}", "-o", str(out), "-q"]
    _fails(base + ["--methods", "random,magic"], capsys, "unknown replay method 'magic'", out)
    _fails(base + ["replay.heldout=48"], capsys, "held-out size 48", out)
    _fails(base + ["replay.heldout=500"], capsys, "held-out size 500", out)
    _fails(base + ["replay.heldout=46"], capsys, "8 probe examples asked for but the replay pool holds 2", out)
    _fails(base + ["replay.heldout=38", "replay.rate=0.5"], capsys, "larger than the replay pool", out)
    _fails(base + ["replay.test_tasks=[nope]"], capsys, "'nope' is not a task", out)
    _fails(["replay", "replay-tiny", f"replay.run={tmp_path / 'missing'}", "-o", str(out)], capsys,
           "lmforget collect RECIPE", out)
    _fails(["replay", "tiny", "-o", str(out)], capsys, "no 'replay:' section", out)
    _fails(base + ["model.name=tiny:gpt2"], capsys, "'model' section differs", out)
    _fails(base + ["finetune.lr=0.5"], capsys, "'finetune' section differs", out)
    _fails(base + ["score.max_length=100"], capsys, "'score' section differs", out)
    _fails(base + ["score.dtype=bfloat16"], capsys, "differs from the precision run", out)
    _fails(base + ["replay.rate=2"], capsys, "'replay.rate'", out)
    # A run committed without its data/ (a fresh clone of a study): say how to rebuild it.
    import shutil

    bare = tmp_path / "bare-run"
    shutil.copytree(tiny_run, bare, ignore=shutil.ignore_patterns("data"))
    _fails(["replay", "replay-tiny", f"replay.run={bare}", "-o", str(out), "-q"], capsys,
           "upstream.jsonl: missing; rebuild the run's data with `lmforget collect", out)


def test_replay_recipe_takes_model_data_and_finetuning_from_its_run(tiny_run: Path) -> None:
    from lmforget.config import load_recipe
    from lmforget.replay.study_setup import load_study_recipe

    ran = Run.open(tiny_run).recipe
    r = load_study_recipe("replay-tiny", [f"replay.run={tiny_run}", f"finetune.lr={ran.finetune.lr}"])
    assert r.name == "replay-tiny" and r.replay.run == str(tiny_run)
    for section in ("model", "upstream", "tasks", "finetune", "score"):
        assert getattr(r, section) == getattr(ran, section)
    from lmforget.finetune import resolve_auto

    assert r.finetune == resolve_auto(load_recipe("tiny").finetune)  # the run was made with `tiny` (auto resolved)
    # batching is not science: a study may use other batch sizes than its run
    r = load_study_recipe("replay-tiny", [f"replay.run={tiny_run}", "finetune.batch_size=1", "score.batch_size=3"])
    assert (r.finetune.batch_size, r.score.batch_size) == (1, 3)


def test_study_scores_at_the_runs_recorded_precision(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    from lmforget.replay.study_setup import load_study_recipe, open_study

    r = load_study_recipe("replay-tiny", [f"replay.run={tiny_run}", "score.dtype=auto"])
    recorded = Run.open(tiny_run).manifest["fingerprints"]["score_dtype"]
    assert open_study(r, tmp_path / "s").recipe.score.dtype == recorded
    old = tmp_path / "old-run"  # a run from before the precision and training objective were recorded
    shutil.copytree(tiny_run, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["fingerprints"]["score_dtype"], manifest["fingerprints"]["objective"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    r = load_study_recipe("replay-tiny", [f"replay.run={old}"])
    with pytest.raises(LmforgetError, match="older lmforget that did not record its objective and score_dtype"):
        open_study(r, tmp_path / "s2")


# ----------------------------------------------------------------- replay-set
@pytest.fixture()
def replay_set_inputs(tiny_run: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    run = Run.open(tiny_run)
    m = run.matrix()
    train = m.subset(rows=np.arange(1, 4))
    z_path = train.save(tmp_path / "Z.npz")
    probe = tmp_path / "probe.csv"
    write_probe(Probe(m.examples[:10].tolist(), m.Z[0, :10].astype(np.float64)), probe)
    return z_path, probe, tiny_run / "data" / "upstream.jsonl"


def test_replay_set_of_self_sampled_examples_keeps_their_token_ids(replay_set_inputs, tmp_path: Path) -> None:
    """Self-sampled data is replayed as the drawn ids with only the continuation trained, never as text."""
    from lmforget.data.load import load_upstream_arg

    z_path, probe, data = replay_set_inputs
    sampled = tmp_path / "sampled.jsonl"
    rng = np.random.default_rng(0)
    with sampled.open("w") as fh:
        for ex in load_upstream_arg(str(data)):
            ids = rng.integers(5, 100, size=12).tolist()
            fh.write(json.dumps({"id": ex.id, "text": "decoded, for reading", "input_ids": ids, "prompt_len": 4})
                     + "\n")
    given = {ex.id: ex.input_ids for ex in load_upstream_arg(str(sampled))}
    out = tmp_path / "replay.jsonl"
    assert main(["replay-set", str(z_path), "--probe", str(probe), "--upstream", str(sampled), "--budget", "5",
                 "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5
    for r in rows:
        assert tuple(r["input_ids"]) == given[r["id"]] and r["prompt_len"] == 4
        assert r["completion_mask"] == [0] * 4 + [1] * 8
    again = {ex.id: ex for ex in load_upstream_arg(str(out))}  # lmforget reads its own output back exactly
    assert all(again[r["id"]].input_ids == given[r["id"]] and again[r["id"]].prompt_len == 4 for r in rows)


def test_replay_set_writes_trl_ready_jsonl(replay_set_inputs, tmp_path: Path, capsys) -> None:
    z_path, probe, data = replay_set_inputs
    out = tmp_path / "replay.jsonl"
    assert main(["replay-set", str(z_path), "--probe", str(probe), "--upstream", str(data), "--budget", "5",
                 "--method", "additive", "--strategy", "top", "--heldout", "10", "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["n"] == len(rows) == 5 and summary["pool"] == 38
    assert all(set(r) == {"text", "id", "score"} for r in rows)
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)  # top-n by predicted forgetting
    from lmforget.replay.heldout import split_heldout

    held = split_heldout([str(e) for e in np.load(z_path)["examples"]], 10, seed=0).heldout_ids
    assert not {r["id"] for r in rows} & set(held)
    # the README recipe: load with datasets and interleave with a task dataset
    import datasets

    replay = datasets.load_dataset("json", data_files=str(out), split="train").select_columns(["text"])
    task = datasets.Dataset.from_dict({"text": [f"task example {i}" for i in range(20)]})
    mixed = datasets.interleave_datasets([task, replay], probabilities=[0.8, 0.2], seed=0,
                                         stopping_strategy="all_exhausted_without_replacement")
    assert len(mixed) == 25 and set(mixed.column_names) == {"text"}  # every example exactly once
    assert sorted(mixed["text"]) == sorted(list(task["text"]) + list(replay["text"]))


def test_replay_set_bad_input(replay_set_inputs, tmp_path: Path, capsys) -> None:
    z_path, probe, data = replay_set_inputs
    out = tmp_path / "r.jsonl"
    base = ["replay-set", str(z_path), "--upstream", str(data), "-o", str(out)]
    _fails(base + ["--probe", str(probe), "--budget", "49"], capsys, "larger than the replay pool", out)
    _fails(base + ["--probe", str(probe), "--budget", "3", "--method", "magic"], capsys,
           "unknown prediction method 'magic'", out)
    bad_probe = tmp_path / "bad.csv"
    bad_probe.write_text("id,forgetting\nnot-an-id,0.1\n")
    _fails(base + ["--probe", str(bad_probe), "--budget", "3"], capsys, "id 'not-an-id' is not an upstream", out)
    bad_probe.write_text("id,score\nu1,0.1\n")  # the one probe format is id,forgetting
    _fails(base + ["--probe", str(bad_probe), "--budget", "3"], capsys, "needs the columns id,forgetting", out)
    _fails(base + ["--probe", str(probe), "--budget", "3", "--heldout", "48"], capsys, "held-out size 48", out)
    _fails(base + ["--probe", str(probe), "--budget", "3", "--strategy", "best"], capsys,
           "unknown selection strategy", out)


def test_tasks_option_runs_finished_test_tasks_while_the_run_is_incomplete(tiny_run: Path, tmp_path: Path,
                                                                           capsys) -> None:
    """`--tasks` runs some test tasks' cells now (e.g. while the run still collects the others); a later run
    without it adds the rest. A completer is refused while rows are missing: it would learn from fewer."""
    import shutil

    from lmforget.workdir import cell_file

    partial = tmp_path / "partial-run"
    shutil.copytree(tiny_run, partial)
    dropped = sorted((partial / "rows").glob("opposites-*"))
    assert dropped
    for p in dropped:
        p.unlink()
    out = tmp_path / "s"
    base = ["replay", "replay-tiny", f"replay.run={partial}", "-o", str(out), "-q"]
    _fails(base + ["--methods", "none"], capsys, "task 'opposites' is unfinished", out)
    _fails(base + ["--methods", "none", "--tasks", "add_numbers,nope"], capsys, "--tasks: nope", out)
    _fails(base + ["--methods", "none,online-additive", "--tasks", "add_numbers"], capsys,
           "1 unfinished task(s) (opposites): a completer would learn", out)
    assert main(base + ["--methods", "none,random", "--tasks", "add_numbers"]) == 0
    interim = json.loads((out / "results.json").read_text())
    assert interim["tasks"] == ["add_numbers"] and interim["complete"] is False
    assert not cell_file(out, "opposites", "none", ".json").exists()
    assert main(base + ["--methods", "none,random", "--report-only"]) == 0  # an interim report needs no --tasks
    assert json.loads((out / "results.json").read_text())["tasks"] == ["add_numbers"]

    # the run finishes (its rows come back); the same study, without --tasks, adds only the other task's cells
    for p in sorted((tiny_run / "rows").glob("opposites-*")):
        shutil.copy2(p, partial / "rows" / p.name)
    done = cell_file(out, "add_numbers", "random", ".json")
    stamp = done.stat().st_mtime_ns
    assert main(base + ["--methods", "none,random"]) == 0
    final = json.loads((out / "results.json").read_text())
    assert final["tasks"] == ["add_numbers", "opposites"] and final["complete"] is True
    assert done.stat().st_mtime_ns == stamp
