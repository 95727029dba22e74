"""Steps 1-4 of the pipeline: score the base model once, then fine-tune and score per task.

`collect(recipe, run_dir)` is what `lmforget collect` and `lmforget demo` call. Every task starts
from the base weights (reloaded per task), each finished row is written atomically, and a re-run of
the same command resumes where a killed one stopped. Under `accelerate launch` all ranks train
together; only the main process scores and writes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from lmforget.config import Recipe
from lmforget.data import load_tasks, load_upstream
from lmforget.data.types import TaskSet, UpstreamSet
from lmforget.errors import LmforgetError
from lmforget.finetune import build_train_set, plan_steps, train
from lmforget.matrix import ForgettingMatrix
from lmforget.models import load_recipe_model
from lmforget.runs import Run, prepare_run, write_row, write_table
from lmforget.scoring.upstream import score_upstream

Log = Callable[[str], None]


def load_inputs(recipe: Recipe) -> tuple[UpstreamSet, list[TaskSet]]:
    """The upstream set and every task of the recipe, validated (empty or duplicate tasks refused)."""
    tokenizer = None
    if recipe.upstream.max_tokens is not None:  # cutting to N tokens needs the model's tokenizer
        from lmforget.models import load_tokenizer

        tokenizer = load_tokenizer(recipe.model.name, trust_remote_code=recipe.model.trust_remote_code,
                                   revision=recipe.model.revision)
    upstream = load_upstream(recipe.upstream, tokenizer=tokenizer)
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


def collect(recipe: Recipe, run_dir: str | Path, *, progress: bool = True,
            log: Log = lambda s: None) -> ForgettingMatrix:
    """Run (or resume) a collection and return the forgetting matrix, also saved as RUN_DIR/matrix.npz."""
    from accelerate import PartialState

    from lmforget.models import model_fingerprint

    state = PartialState()
    upstream, tasks = load_inputs(recipe)
    model_fp = model_fingerprint(recipe.model.name, seed=recipe.seed, revision=recipe.model.revision)
    if recipe.model.chat_template != "auto":  # the template changes every encoded example
        model_fp += f"+template:{recipe.model.chat_template}"
    run = prepare_run(recipe, run_dir, upstream, tasks, model_fp, is_main=state.is_main_process)
    done = set(run.finished())
    todo = [t for t in tasks if t.name not in done]
    from lmforget.data.load import describe_counts

    log(f"{len(upstream)} upstream examples ({describe_counts(upstream.stats)}), {len(tasks)} tasks "
        f"({len(done)} already finished) -> {run.path}")

    model = tokenizer = None
    if run.base_scores() is None:
        model, tokenizer = load_recipe_model(recipe)
        if state.is_main_process:
            base = score_upstream(model, tokenizer, upstream, recipe.score, progress,
                                  workdir=run.path / "work" / "base", description="scoring base model")
            write_table(run.path / "base.parquet", base)
        state.wait_for_everyone()

    for i, task in enumerate(todo, 1):
        start = time.perf_counter()
        if model is None:
            model, tokenizer = load_recipe_model(recipe)
        train_set = build_train_set(tokenizer, task, recipe.finetune)
        steps = plan_steps(len(train_set), recipe.finetune)
        result = train(model, tokenizer, train_set, recipe.finetune, max_steps=steps, progress=progress,
                       description=f"[{len(done) + i}/{len(tasks)}] {task.name}")
        if state.is_main_process:
            scores = score_upstream(result.model, tokenizer, upstream, recipe.score, progress,
                                    workdir=run.path / "work" / "model", description=f"scoring {task.name}")
            info = {"task": task.name, "group": task.group, "steps": result.steps,
                    "train_loss": result.train_loss, "train_seconds": result.seconds,
                    "n_train_examples": result.n_examples, "seconds": time.perf_counter() - start,
                    "log": result.log}
            write_row(run, task.name, scores, info)
            log(f"finished {task.name}: {result.steps} steps, loss {result.train_loss:.4f}, "
                f"{info['seconds']:.0f}s")
        state.wait_for_everyone()
        model = tokenizer = None  # the next task starts again from the base weights

    matrix = Run.open(run.path).matrix(require_all=True)
    if state.is_main_process:
        matrix.save(run.path / "matrix.npz")
    return matrix
