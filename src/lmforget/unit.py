"""The unit of work every stage shares: the base model fine-tuned on one task, then scored.

`FineTune` holds its steps (load the base weights as every unit loads them, encode the task, train, score,
the log, free the memory) so that each caller composes the same ones: `finetune_and_score` (a collect row),
Ray Train's workers (`lmforget.raytrain`), the replay cell (which trains on a replay mixture and scores
held-out and task examples) and the study scripts. The row log (`info`) is built here only.
"""

from __future__ import annotations

import time
from typing import Sequence

import pandas as pd

from lmforget.config import FinetuneConfig, Recipe
from lmforget.data.types import TaskSet, UpstreamSet
from lmforget.finetune import TrainResult, build_train_set, free_memory, plan_steps, train
from lmforget.models import load_recipe_model, training_dtype


class FineTune:
    """The recipe's base model, loaded at the training dtype (or `dtype`), and `task` encoded for it.

    `finetune`: the settings to train with (default: the recipe's; a replay arm changes L2-SP or LoRA).
    Before `train`, `model` is the base model (a caller may score it or keep its weights first).
    """

    def __init__(self, recipe: Recipe, task: TaskSet, *, finetune: FinetuneConfig | None = None,
                 dtype: str | None = None) -> None:
        self.start = time.perf_counter()
        self.recipe, self.task, self.ft = recipe, task, finetune or recipe.finetune
        if recipe.score.backend == "vllm":
            from lmforget.scoring.vllm import sleep_engine

            sleep_engine()  # the scoring engine gives the GPU back while this task trains
        self.model, self.tokenizer = load_recipe_model(recipe, dtype=dtype or training_dtype(recipe))
        self.train_set = build_train_set(self.tokenizer, task, self.ft)
        self.result: TrainResult | None = None

    def train(self, data: Sequence | None = None, *, steps: int | None = None, callbacks: Sequence = (),
              trainer_cls: type | None = None, progress: bool = False, description: str = "") -> TrainResult:
        """Fine-tune `model` in place on `data` (default: the task's examples) for `steps` (default: the
        recipe's plan for them)."""
        data = self.train_set if data is None else data
        steps = plan_steps(len(data), self.ft) if steps is None else steps
        self.result = train(self.model, self.tokenizer, data, self.ft, max_steps=steps, callbacks=callbacks,
                            progress=progress, description=description or self.task.name, trainer_cls=trainer_cls)
        self.model = self.result.model
        return self.result

    def score(self, examples: UpstreamSet, *, progress: bool = False, description: str = "") -> pd.DataFrame:
        """`examples` under the current model, as the recipe scores."""
        from lmforget.scoring.upstream import score_upstream

        return score_upstream(self.model, self.tokenizer, examples, self.recipe.score, progress,
                              description=description or f"scoring {self.task.name}")

    def info(self, **extra) -> dict:
        """The row log of a trained task: steps, loss, seconds since the unit began, the trainer's log."""
        r = self.result
        return {"task": self.task.name, "group": self.task.group, "steps": r.steps, "train_loss": r.train_loss,
                "train_seconds": r.seconds, "n_train_examples": r.n_examples,
                "seconds": time.perf_counter() - self.start, "log": r.log, **extra}

    def release(self) -> None:
        """Drop the model (base and trained are one object) and free its memory: the next unit's model must
        not load on top of it. The training numbers stay for `info`."""
        self.model = None
        if self.result is not None:
            self.result.model = None
        free_memory()


def finetune_and_score(recipe: Recipe, upstream: UpstreamSet, task: TaskSet, *,
                       finetune: FinetuneConfig | None = None, progress: bool = False,
                       description: str = "") -> tuple[pd.DataFrame, dict] | None:
    """Fine-tune the base model on `task`, score `upstream` -> (scores, info); None on the non-main ranks of
    an `accelerate launch` (they train together; the main one alone scores)."""
    from accelerate import PartialState

    from lmforget.executor import fault_point

    unit = FineTune(recipe, task, finetune=finetune)
    unit.train(progress=progress, description=description)
    fault_point("task.trained")
    if not PartialState().is_main_process:
        unit.release()
        return None
    scores = unit.score(upstream, progress=progress)
    info = unit.info()
    unit.release()
    return scores, info
