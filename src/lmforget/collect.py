"""Steps 1-4 of the pipeline: score the base model once, then fine-tune and score per task.

`collect(recipe, run_dir)` is what `lmforget collect` and `lmforget demo` call. Every task starts
from the base weights (reloaded per task), each finished row is written atomically, and a re-run of
the same command resumes where a killed one stopped. Under `accelerate launch` all ranks train
together; only the main process scores and writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from lmforget import unit
from lmforget.config import ExecutorConfig, Recipe
from lmforget.data import load_tasks, load_upstream
from lmforget.data.types import TaskSet, UpstreamSet
from lmforget.errors import LmforgetError
from lmforget.finetune import free_memory
from lmforget.matrix import ForgettingMatrix
from lmforget.models import load_recipe_model, training_dtype
from lmforget.runs import Run, prepare_run, write_row, write_table
from lmforget.scoring.upstream import score_upstream
from lmforget.workdir import BASE

Log = Callable[[str], None]


def load_recipe_upstream(recipe: Recipe, progress: bool = True, log: Log = lambda s: None) -> UpstreamSet:
    """The recipe's upstream set; self-sampled data is drawn from the recipe's model (or its cache)."""
    m = recipe.model
    if recipe.upstream.format == "self-sampled":
        from lmforget.self_sampling import self_sampled_upstream

        return self_sampled_upstream(recipe.upstream, m.name, init_seed=m.init_seed, revision=m.revision,
                                     trust_remote_code=m.trust_remote_code, device=m.device,
                                     progress=progress, log=log)
    tokenizer = None
    if recipe.upstream.max_tokens is not None:  # cutting to N tokens needs the model's tokenizer
        from lmforget.models import load_tokenizer

        tokenizer = load_tokenizer(m.name, trust_remote_code=m.trust_remote_code, revision=m.revision)
    return load_upstream(recipe.upstream, tokenizer=tokenizer)


def load_inputs(recipe: Recipe, progress: bool = True, log: Log = lambda s: None) -> tuple[UpstreamSet, list[TaskSet]]:
    """The upstream set and every task of the recipe, validated (empty or duplicate tasks refused)."""
    upstream = load_recipe_upstream(recipe, progress, log)
    tasks: list[TaskSet] = []
    for source_name, spec in recipe.tasks.items():
        loaded = load_tasks(spec)
        if not loaded:
            raise LmforgetError(f"recipe task source {source_name!r} produced no tasks")
        tasks.extend(loaded)
    seen: set[str] = set()
    for t in tasks:
        if t.name in seen:
            raise LmforgetError(f"two tasks are named {t.name!r}; task names must be unique across sources")
        seen.add(t.name)
    return upstream, tasks


def score_base(recipe: Recipe, upstream: UpstreamSet, progress: bool = False) -> pd.DataFrame | None:
    """One unit of work: the base model's scores (run by an executor, written by the caller).

    The base is loaded as training loads it and scored by the same `score_upstream` at the same dtype
    as every fine-tuned model. Returns None on the non-main ranks of an `accelerate launch` (only the
    main rank scores: one vLLM engine, not one per rank on the same GPU).
    """
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return None
    model, tokenizer = load_recipe_model(recipe, dtype=training_dtype(recipe))
    scores = score_upstream(model, tokenizer, upstream, recipe.score, progress, description="scoring base model")
    del model
    free_memory()
    return scores


def finetune_and_score(recipe: Recipe, upstream: UpstreamSet, task: TaskSet, progress: bool = False,
                       position: str = "") -> tuple[pd.DataFrame, dict] | None:
    """One unit of work: fine-tune the base model on `task`, score the upstream set -> (scores, log).

    Returns None on the non-main ranks of an `accelerate launch`; with executor.gpus_per_task > 1 the
    fine-tuning runs on that many Ray Train workers (lmforget.raytrain).
    """
    if recipe.executor.kind == "ray" and recipe.executor.gpus_per_task > 1:
        from lmforget.raytrain import finetune_and_score_distributed

        return finetune_and_score_distributed(recipe, upstream, task, int(recipe.executor.gpus_per_task))
    return unit.finetune_and_score(recipe, upstream, task, progress=progress, description=f"{position}{task.name}")


def collect(recipe: Recipe, run_dir: str | Path, *, progress: bool = True, log: Log = lambda s: None,
            executor: ExecutorConfig | None = None) -> ForgettingMatrix:
    """Run (or resume) a collection and return the forgetting matrix, also saved as RUN_DIR/matrix.npz.

    `executor` (default: the recipe's) decides where the units run; this process alone writes the run
    directory, each row as its unit finishes. Failed tasks are recorded (rows/<task>.error.json), the
    others finish, then LmforgetError names the failed ones; a re-run retries only unfinished tasks.
    """
    from lmforget import launch
    from lmforget.driver import Unit, drive
    from lmforget.executor import fault_point, open_executor
    from lmforget.identity import run_fingerprints

    exe_cfg = executor or recipe.executor
    recipe = resolve_recipe(recipe, exe_cfg)
    launch.check_launch(recipe, exe_cfg, cuda=launch.units_on_cuda(recipe, exe_cfg))
    state = launch.launch_state()
    launch.prepare_wait()
    with open_executor(exe_cfg) as ex:  # first: a missing Ray or an unreachable cluster fails before any work
        upstream, tasks = load_inputs(recipe, progress, log)
        fps = run_fingerprints(recipe, upstream, tasks)
        # the main process makes (or checks) the run directory before the others read it
        run = prepare_run(recipe, run_dir, upstream, tasks, fps) if state.is_main_process else None
        state.wait_for_everyone()
        run = run or prepare_run(recipe, run_dir, upstream, tasks, fps, is_main=False)
        done = set(run.finished())
        todo = [t for t in tasks if t.name not in done]
        from lmforget.data.load import describe_counts

        where = "" if ex.kind == "local" else f" (executor: ray at {exe_cfg.address or 'a local instance'})"
        log(f"{len(upstream)} upstream examples ({describe_counts(upstream.stats)}), {len(tasks)} tasks "
            f"({len(done)} already finished) -> {run.path}{where}")
        bars = progress and ex.kind == "local"
        shared = ex.put(upstream)  # once: every unit reads the same object
        units = [Unit(BASE, (score_base, recipe, shared, bars))] if run.base_scores() is None else []
        units += [Unit(t.name, (finetune_and_score, recipe, shared, ex.put(t), bars,
                                f"[{len(done) + i}/{len(tasks)}] ")) for i, t in enumerate(todo, 1)]

        def write(key: str, value) -> list[str]:
            if value is None:  # a non-main rank of a launch: the main one writes
                return []
            if key == BASE:
                write_table(run.path / "base.parquet", value)
                return [key]
            scores, info = value
            write_row(run, key, scores, info)
            fault_point("driver.row_written")
            log(f"finished {key}: {info['steps']} steps, loss {info['train_loss']:.4f}, {info['seconds']:.0f}s")
            return [key]

        drive(run.workdir, ex, _dispatch, units, write, noun="task", log=log, record=state.is_main_process,
              single_gpu=[BASE], after_each=launch.wait_for_main if ex.kind == "local" else lambda: None)
    matrix = Run.open(run.path).matrix(require_all=True)
    if state.is_main_process:
        matrix.save(run.path / "matrix.npz")
    return matrix


def _dispatch(fn, *args):
    return fn(*args)


def scoring_dtype(recipe: Recipe, executor: ExecutorConfig | None = None) -> str:
    """The torch dtype name scores are computed in, resolved where the units will run (kept in the manifest:
    a run is never finished at another precision than it was started). auto: bf16 on a GPU with native
    bf16 (Ray GPU workers seen from a driver without one are assumed to have it), else fp32."""
    import torch

    from lmforget.launch import units_on_cuda
    from lmforget.models import native_bf16

    dtype = recipe.score.dtype
    if dtype != "auto":
        return dtype
    if not units_on_cuda(recipe, executor):
        return "float32"
    return "bfloat16" if native_bf16() or not torch.cuda.is_available() else "float32"


def resolve_recipe(recipe: Recipe, executor: ExecutorConfig) -> Recipe:
    """The recipe with every `auto` setting resolved where the units run, before any fingerprint is taken:
    the scoring dtype, the optimizer and bf16. Explicit settings are kept as they are."""
    from lmforget.finetune import resolve_auto
    from lmforget.launch import units_on_cuda

    cuda = units_on_cuda(recipe, executor)
    return recipe.model_copy(update={
        "executor": executor,  # units read gpus_per_task from it
        "score": recipe.score.model_copy(update={"dtype": scoring_dtype(recipe, executor)}),
        "finetune": resolve_auto(recipe.finetune, cuda)})
