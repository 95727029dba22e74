"""Executors against a real local Ray cluster: same matrix as a local run, faults, resume, status.

Kill points are deterministic (LMFORGET_FAULT=POINT:MARKER makes the first process that reaches POINT
SIGKILL itself once), never sleeps. The Ray tests share one session cluster (tests/conftest.py).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmforget.cli import main
from lmforget.config import ExecutorConfig, load_recipe
from lmforget.errors import LmforgetError
from lmforget.executor import LocalExecutor, executor_config
from lmforget.matrix import ForgettingMatrix
from lmforget.runs import Run
from lmforget.status import run_status

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def local_tiny(tmp_path_factory) -> ForgettingMatrix:
    from lmforget.collect import collect

    out = tmp_path_factory.mktemp("local") / "run"
    m = collect(load_recipe("tiny"), out, progress=False)
    m.meta["run_dir"] = str(out)
    return m


def test_local_executor_reports_errors_and_goes_on() -> None:
    outs = list(LocalExecutor().map(math.sqrt, [("a", (4,)), ("b", (-1,)), ("c", (9,))]))
    assert [(o.key, o.value, o.error) for o in outs] == [("a", 2, None), ("b", None, "ValueError: math domain error"),
                                                          ("c", 3, None)]
    assert "Traceback" in outs[1].detail


def test_executor_config_from_the_command_line() -> None:
    base = ExecutorConfig(cpus_per_task=2)
    assert executor_config(base).kind == "local"
    cfg = executor_config(base, address="127.0.0.1:6379")
    assert (cfg.kind, cfg.address, cfg.cpus_per_task) == ("ray", "127.0.0.1:6379", 2)
    # the executor is no part of the run's fingerprint: kind and resources may change between sessions
    from lmforget.collect import resolve_recipe
    from lmforget.data.types import TaskExample, TaskSet, UpstreamExample, UpstreamSet
    from lmforget.identity import run_fingerprints

    up = UpstreamSet([UpstreamExample(id="u", text="some text")])
    tasks = [TaskSet("t", "g", [TaskExample.from_prompt("q", "a")])]
    a, b = load_recipe("tiny"), load_recipe("tiny", ["executor.kind=ray", "executor.gpus_per_task=1"])
    def fps(recipe):
        return run_fingerprints(resolve_recipe(recipe, ExecutorConfig()), up, tasks)

    assert fps(a) == fps(b)
    assert fps(a)["finetune"] != fps(load_recipe("tiny", ["finetune.lr=0.5"]))["finetune"]


def test_missing_ray_or_unreachable_cluster_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    code = main(["collect", "tiny", "-o", str(tmp_path / "a"), "-q", "--address", "127.0.0.1:1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot reach the Ray cluster at 127.0.0.1:1" in err
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = main(["collect", "tiny", "-o", str(tmp_path / "b"), "-q", "--executor", "ray"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pip install 'lmforget[ray]'" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # no partial output


def test_ray_map_runs_units_in_parallel_workers(ray_cluster) -> None:
    from lmforget.executor import RayExecutor

    ex = RayExecutor(ExecutorConfig(kind="ray"))
    shared = ex.put(16)  # a function the workers can import (not this test module, which they cannot)
    outs = {o.key: o for o in ex.map(math.sqrt, [(str(i), (i,)) for i in (1, -2, 9)] + [("s", (shared,))])}
    assert {k: o.value for k, o in outs.items() if o.error is None} == {"1": 1, "9": 3, "s": 4}
    assert outs["-2"].error == "ValueError: math domain error" and "Traceback" in outs["-2"].detail
    with pytest.raises(LmforgetError, match="gpus_per_task=1 but the Ray cluster has 0 GPU"):  # no silent hang
        list(RayExecutor(ExecutorConfig(kind="ray", gpus_per_task=1)).map(math.sqrt, [("a", (1,))]))
    ex.close()
    import ray

    assert ray.is_initialized()  # a connection it did not open is left open


def test_ray_workers_run_at_the_drivers_niceness_not_rays_default_plus_15(ray_cluster) -> None:
    """A local instance's workers are the job: at Ray's default nice +15 any other busy process starves them."""
    from lmforget.executor import RayExecutor

    (outcome,) = RayExecutor(ExecutorConfig(kind="ray")).map(os.nice, [("nice", (0,))])
    assert outcome.value == os.nice(0)


_OOM_DRILL = """
import time
from lmforget.config import ExecutorConfig
from lmforget.executor import RayExecutor

ex = RayExecutor(ExecutorConfig(kind="ray", max_retries=1))
try:
    (outcome,) = ex.map(time.sleep, [("sleeper", (30,))])
finally:
    ex.close()
print(outcome.key, "|", outcome.error)
"""


def test_a_unit_rays_memory_monitor_keeps_killing_fails_after_max_retries_with_one_line(tmp_path) -> None:
    """Ray retries a unit its memory monitor kills forever by default, so other processes that fill the
    machine's memory make a run retrain the same units without end. Here the threshold is 1% of the node's
    memory, so the monitor kills the unit every time: it must fail after 1 + max_retries kills, with a line
    that says why, instead of running forever (the unit sleeps 30 s; killed twice it ends in ~10)."""
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'lmforget[ray]')")
    env = {**os.environ, "PYTHONPATH": str(SRC), "RAY_memory_usage_threshold": "0.01",
           "RAY_memory_monitor_refresh_ms": "100"}
    proc = subprocess.run([sys.executable, "-c", _OOM_DRILL], capture_output=True, text=True, env=env,
                          timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    key, error = proc.stdout.strip().splitlines()[-1].split(" | ")
    assert key == "sleeper"
    assert error.startswith("killed for lack of memory 2 times by Ray's memory monitor"), error
    assert "executor.max_concurrent=1" in error


def test_worker_killed_mid_task_is_retried_and_matrix_equals_local(ray_cluster, local_tiny, tmp_path,
                                                                   monkeypatch) -> None:
    import lmforget.collect as collect_mod

    writes: list[str] = []
    snapshots: list[dict] = []  # `lmforget status` read while the collect runs, before each row is written
    real = collect_mod.write_row

    def write_row(run, task, *a):
        snapshots.append(run_status(run.path))
        writes.append(task)
        real(run, task, *a)

    monkeypatch.setattr(collect_mod, "write_row", write_row)
    marker = tmp_path / "killed"
    monkeypatch.setenv("LMFORGET_FAULT", f"task.trained:{marker}")
    m = collect_mod.collect(load_recipe("tiny"), tmp_path / "run", progress=False,
                            executor=ExecutorConfig(kind="ray", max_retries=2))
    assert marker.exists()  # a worker really died after training, before scoring
    assert sorted(writes) == sorted(local_tiny.tasks.tolist())  # each row written exactly once
    assert list(m.tasks) == list(local_tiny.tasks)  # the recipe's order, whatever order the rows finished in
    np.testing.assert_allclose(m.Z, local_tiny.Z, atol=1e-6)
    assert all(snap["collect_running"] for snap in snapshots)
    assert [snap["counts"]["finished"] for snap in snapshots] == [0, 1, 2, 3]
    assert snapshots[0]["counts"]["running"] >= 1 and snapshots[-1]["eta_seconds"] is not None
    st = run_status(tmp_path / "run")
    assert not st["collect_running"]
    assert st["counts"] == {"finished": 4, "running": 0, "failed": 0, "pending": 0} and st["eta_seconds"] == 0
    assert all(t["seconds"] > 0 for t in st["tasks"])


def _bad_recipe(tmp_path: Path) -> Path:
    """The tiny recipe plus a task whose answers are empty: it cannot be encoded for training."""
    from importlib import resources

    tasks = (resources.files("lmforget") / "resources" / "tiny" / "tasks.jsonl").read_text()
    bad = [{"task": "empty_answers", "group": "broken", "split": "train", "prompt": f"Say nothing {i}.",
            "completion": ""} for i in range(4)]
    (tmp_path / "tasks.jsonl").write_text(tasks + "".join(json.dumps(r) + "\n" for r in bad))
    recipe = (resources.files("lmforget.recipes") / "tiny.yaml").read_text()
    recipe = recipe.replace("path: package:tiny/tasks.jsonl", f"path: {tmp_path / 'tasks.jsonl'}")
    (tmp_path / "bad.yaml").write_text(recipe)
    return tmp_path / "bad.yaml"


def test_failing_task_is_recorded_others_finish_and_rerun_retries_only_it(ray_cluster, tmp_path, capsys) -> None:
    recipe, out = _bad_recipe(tmp_path), tmp_path / "run"
    args = ["collect", str(recipe), "-o", str(out), "-q", "--address", ray_cluster]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("lmforget: error: 1 task(s) failed: empty_answers") and "no training example" in last
    run = Run.open(out)
    assert sorted(run.finished()) == sorted(t for t in run.task_names if t != "empty_answers")
    rec = json.loads(run.error_path("empty_answers").read_text())
    assert "no training example has answer tokens" in rec["error"] and "Traceback" in rec["traceback"]
    st = run_status(out)
    assert st["counts"] == {"finished": 4, "running": 0, "failed": 1, "pending": 0}
    assert [t["state"] for t in st["tasks"] if t["task"] == "empty_answers"] == ["failed"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.parquet")}
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "(4 already finished)" in err and "1 task(s) failed: empty_answers" in err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.parquet")} == mtimes  # only it re-ran
    assert json.loads(run.error_path("empty_answers").read_text())["time"] > rec["time"]


def test_killed_driver_resumes_without_recomputing_rows(ray_cluster, tmp_path, capsys) -> None:
    out, marker = tmp_path / "run", tmp_path / "driver-killed"
    args = ["collect", "tiny", "-o", str(out), "-q", "--address", ray_cluster]
    env = {**os.environ, "PYTHONPATH": str(SRC), "LMFORGET_FAULT": f"driver.row_written:{marker}"}
    killed = subprocess.run([sys.executable, "-m", "lmforget", *args], capture_output=True, text=True, env=env,
                            timeout=300)
    assert killed.returncode == -9 and marker.exists(), killed.stderr
    done = {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.parquet")}
    assert len(done) >= 1
    st = run_status(out)  # the dead driver's units count as pending again
    assert not st["collect_running"] and st["counts"]["running"] == 0
    assert st["counts"]["finished"] == len(done) and st["counts"]["pending"] == 4 - len(done)
    capsys.readouterr()
    assert main(args) == 0
    assert f"({len(done)} already finished)" in capsys.readouterr().err
    after = {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.parquet")}
    assert len(after) == 4 and all(after[name] == t for name, t in done.items())
    assert ForgettingMatrix.load(out / "matrix.npz").shape == (4, 48)


def test_replay_cells_and_similarity_measures_run_as_ray_tasks(ray_cluster, local_tiny, tmp_path) -> None:
    from lmforget.analysis.similarity import similarity_for_run
    from lmforget.replay.study import run_study
    from lmforget.replay.study_setup import load_study_recipe

    run_dir = local_tiny.meta["run_dir"]
    ray_cfg = ExecutorConfig(kind="ray")
    opts = dict(measures=["embedding", "gradient"], encoder="base", dim=64, columns=16, max_task_examples=4)
    assert similarity_for_run(run_dir, executor=ray_cfg, **opts) == similarity_for_run(run_dir, **opts)
    recipe = load_study_recipe("replay-tiny", [f"replay.run={run_dir}", "replay.test_tasks=[add_numbers]"])
    local = run_study(recipe, tmp_path / "local", "none,random", progress=False)
    remote = run_study(recipe, tmp_path / "ray", "none,random", progress=False, executor=ray_cfg)
    assert len(local["cells"]) == len(remote["cells"]) == 2  # one test task x two methods
    for a, b in zip(local["cells"], remote["cells"], strict=True):
        assert (a["task"], a["method"]) == (b["task"], b["method"])
        assert abs(a["heldout_mean_increase"] - b["heldout_mean_increase"]) < 1e-6


@pytest.mark.slow  # ~80 s: Ray Train starts a controller and worker actors per fit
def test_two_ray_train_workers_on_gloo_match_one(ray_cluster) -> None:
    """Multi-GPU tasks, proven on CPU: DDP over 2 gloo workers = 1 worker with the same effective batch."""
    from lmforget.collect import finetune_and_score, load_inputs
    from lmforget.raytrain import finetune_and_score_distributed

    recipe = load_recipe("tiny", ["finetune.batch_size=1", "finetune.effective_batch=4"])
    upstream, tasks = load_inputs(recipe)
    one_s, one = finetune_and_score_distributed(recipe, upstream, tasks[0], 1, use_gpu=False)
    two_s, two = finetune_and_score_distributed(recipe, upstream, tasks[0], 2, use_gpu=False)
    local_s, local = finetune_and_score(recipe, upstream, tasks[0])
    losses = [[e["loss"] for e in info["log"] if "loss" in e] for info in (one, two, local)]
    assert two["train_workers"] == 2 and len(losses[0]) == one["steps"] == two["steps"] > 1
    np.testing.assert_allclose(losses[1], losses[0], atol=1e-4)  # measured: < 5e-7
    np.testing.assert_allclose(losses[2], losses[0], atol=1e-6)  # 1 worker = the local code path
    np.testing.assert_allclose(two_s["nll"], one_s["nll"], atol=1e-5)  # measured: 9e-8
    assert list(two_s["id"]) == upstream.ids
