"""One task's fine-tuning on several GPUs (or CPU processes) with Ray Train, then scoring on rank 0.

Used by `collect` when `executor.gpus_per_task > 1` (OLMo-2 13B, Pythia 12B, 7B models without
8-bit optimizers): instead of an `accelerate launch` per task, a Ray `TorchTrainer` starts that many
workers, each running the very `lmforget.finetune.train` (HF Trainer) code path; Ray Train sets up the
process group and the RANK/WORLD_SIZE variables the Trainer reads, so DDP and a DeepSpeed config
(`finetune.deepspeed`) work as under accelerate. Rank 0 then scores the upstream set (gathering
ZeRO-3 shards first) and reports the scores; nothing is written to the run directory here.
"""

from __future__ import annotations

import gc
import tempfile
import time

import pandas as pd

from lmforget.config import Recipe
from lmforget.data.types import TaskSet, UpstreamSet
from lmforget.errors import LmforgetError


def _full_state_dict(model, deepspeed: bool) -> dict | None:
    """The trained weights on CPU (rank 0 only; every rank must call it: ZeRO-3 gathers collectively)."""
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_initialized() else 0
    if deepspeed:
        import deepspeed as ds

        with ds.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
            return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()} if rank == 0 else None
    return {k: v.detach().cpu() for k, v in model.state_dict().items()} if rank == 0 else None


def _train_loop(config: dict) -> None:
    """What every Ray Train worker runs: fine-tune (same code path as a local task), rank 0 scores."""
    import ray
    import ray.train
    import torch

    from lmforget.finetune import build_train_set, plan_steps, train
    from lmforget.models import load_recipe_model
    from lmforget.scoring.upstream import score_upstream

    recipe: Recipe = config["recipe"]
    upstream: UpstreamSet = ray.get(config["upstream"])
    task: TaskSet = ray.get(config["task"])
    start = time.perf_counter()
    cpu_recipe = recipe.model_copy(update={"model": recipe.model.model_copy(update={"device": "cpu"})})
    model, tokenizer = load_recipe_model(cpu_recipe)  # the Trainer moves it to this worker's device
    items = build_train_set(tokenizer, task, recipe.finetune)
    steps = plan_steps(len(items), recipe.finetune)
    result = train(model, tokenizer, items, recipe.finetune, max_steps=steps, progress=False)
    state = _full_state_dict(result.model, bool(recipe.finetune.deepspeed))
    info = {"task": task.name, "group": task.group, "steps": result.steps, "train_loss": result.train_loss,
            "train_seconds": result.seconds, "n_train_examples": result.n_examples, "log": result.log,
            "train_workers": ray.train.get_context().get_world_size()}
    del result, model  # the training copy leaves the GPU before the scoring copy arrives
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if ray.train.get_context().get_world_rank() == 0:
        scorer, _ = load_recipe_model(cpu_recipe)  # the architecture, filled with the trained weights
        scorer.load_state_dict(state)
        del state
        scorer.to("cuda" if torch.cuda.is_available() else "cpu")
        scores = score_upstream(scorer, tokenizer, upstream, recipe.score, progress=False)
        info["seconds"] = time.perf_counter() - start
        ray.get(config["mailbox"].put.remote({"scores": scores.to_dict(orient="list"), "info": info}))


def finetune_and_score_distributed(recipe: Recipe, upstream: UpstreamSet, task: TaskSet, num_workers: int, *,
                                   use_gpu: bool = True) -> tuple[pd.DataFrame, dict]:
    """Fine-tune on `num_workers` Ray Train workers (one GPU each, or CPU processes on gloo), score on rank 0."""
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError:
        raise LmforgetError("multi-GPU tasks need Ray Train: pip install 'lmforget[ray]'") from None
    @ray.remote(num_cpus=0)
    class Mailbox:  # rank 0's result comes back through it (Ray Train keeps metrics only with checkpoints)
        def __init__(self) -> None:
            self.value = None

        def put(self, value) -> None:
            self.value = value

        def get(self):
            return self.value

    mailbox = Mailbox.remote()
    per_worker = {"CPU": recipe.executor.cpus_per_task, **({"GPU": 1} if use_gpu else {})}
    with tempfile.TemporaryDirectory(prefix="lmforget-raytrain-") as storage:
        trainer = TorchTrainer(
            _train_loop,
            train_loop_config={"recipe": recipe, "upstream": ray.put(upstream), "task": ray.put(task),
                               "mailbox": mailbox},
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=per_worker),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            run_config=RunConfig(storage_path=storage, name=f"lmforget-{task.name}"[:60]),
        )
        result = trainer.fit()
    reply = ray.get(mailbox.get.remote())
    ray.kill(mailbox)
    if reply is None:
        raise LmforgetError(f"task {task.name!r}: the Ray Train run returned no scores ({result.error})")
    return pd.DataFrame(reply["scores"]), reply["info"]
