"""One task's fine-tuning on several GPUs (or CPU processes) with Ray Train, then scoring on rank 0.

Used by `collect` when `executor.gpus_per_task > 1`: instead of an `accelerate launch` per task, a
Ray `TorchTrainer` starts that many workers, each running the very `lmforget.finetune.train` (HF
Trainer) code path; Ray Train sets up the process group and the RANK/WORLD_SIZE variables the Trainer
reads. Plain DDP replicates weights, gradients and optimizer state on every GPU, so it makes a task
faster, never a bigger model fit; what fits a model that one GPU cannot hold is ZeRO-3
(`finetune.deepspeed`, e.g. `package:deepspeed_zero3.json`), which shards all three. Rank 0 then
scores the upstream set and reports the scores; nothing is written to the run directory here.

Every worker loads the base weights as a local task does (fp32 for full fine-tuning), on CPU first:
at 13B that is 52 GB of host memory per worker before the Trainer shards or moves it. A node without
that much memory for each of its workers is refused before any worker loads (`check_host_memory`),
in one line naming the model, the copies and the memory, rather than left to the kernel's OOM killer.
"""

from __future__ import annotations

import tempfile

import pandas as pd

from lmforget.config import Recipe
from lmforget.data.types import TaskSet, UpstreamSet
from lmforget.errors import LmforgetError


def _gather_zero3(model, rank: int) -> dict | None:
    """The ZeRO-3-sharded trained weights as a CPU state dict on rank 0; every rank must call it (the
    gather is collective). One parameter at a time, so no GPU ever holds the whole model twice."""
    import deepspeed

    state = {}
    for name, param in model.named_parameters():
        with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
            if rank == 0:
                state[name] = param.detach().cpu().clone()
    return state if rank == 0 else None


def _model_from_state(config, state: dict, trust_remote_code: bool):
    """The architecture around `state`'s tensors without a second copy of the weights: parameters start
    empty (meta) and take the gathered tensors themselves; buffers are built as usual."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    empty = [n for n, p in model.named_parameters() if p.is_meta]
    if empty:
        raise LmforgetError(f"gathered ZeRO-3 weights lack {len(empty)} parameter(s), e.g. {empty[0]!r}")
    return model


def parameter_count(model: str, *, revision: str | None = None, trust_remote_code: bool = False) -> int | None:
    """The parameters of a hub or local model, from its config alone (no weights loaded); None when the
    config cannot be read (tiny and GGUF models are small, and a load error is reported by the load)."""
    from lmforget.models import resolve_spec

    try:
        kind, target = resolve_spec(model)
        if kind not in ("hub", "dir"):
            return None
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(target, revision=revision, trust_remote_code=trust_remote_code)
        with init_empty_weights():
            empty = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        return sum(p.numel() for p in empty.parameters())
    except (OSError, ValueError, LmforgetError):
        return None


def host_memory_bytes() -> int:
    """Memory this node can still give (MemAvailable; the physical total where /proc is absent)."""
    import os

    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_host_memory(model: str, n_params: int | None, dtype_bytes: int, workers_on_node: int,
                      available: int) -> None:
    """Refuse, in one line, a node whose workers' CPU copies of the base weights cannot all fit."""
    if n_params is None:
        return
    need = n_params * dtype_bytes * workers_on_node
    if need > available:
        gb = 1024 ** 3
        raise LmforgetError(
            f"Ray Train: {workers_on_node} worker(s) on this node each load {model} on CPU first "
            f"({n_params / 1e9:.1f}B parameters x {dtype_bytes} bytes = {n_params * dtype_bytes / gb:.0f} GB each, "
            f"{need / gb:.0f} GB in all), but the node has {available / gb:.0f} GB available; run fewer workers "
            "per node (executor.gpus_per_task across nodes) or use nodes with more memory")


def _train_loop(config: dict) -> None:
    """What every Ray Train worker runs: fine-tune (the unit a local task runs, `lmforget.unit`), rank 0 scores."""
    import ray
    import ray.train
    import torch

    from lmforget.launch import zero_stage
    from lmforget.models import resolve_dtype, training_dtype
    from lmforget.scoring.upstream import score_upstream
    from lmforget.unit import FineTune

    recipe: Recipe = config["recipe"]
    upstream: UpstreamSet = ray.get(config["upstream"])
    task: TaskSet = ray.get(config["task"])
    cuda = torch.cuda.is_available()
    # what a local task on this worker's device loads (the CPU load below must not decide "auto")
    dtype = str(resolve_dtype(training_dtype(recipe), "cuda" if cuda else "cpu")).removeprefix("torch.")
    cpu_recipe = recipe.model_copy(update={"model": recipe.model.model_copy(update={"device": "cpu"})})
    m = recipe.model
    check_host_memory(m.name, parameter_count(m.name, revision=m.revision, trust_remote_code=m.trust_remote_code),
                      torch.empty((), dtype=getattr(torch, dtype)).element_size(),
                      ray.train.get_context().get_local_world_size(), host_memory_bytes())
    unit = FineTune(cpu_recipe, task, dtype=dtype)  # on CPU: the Trainer moves it to this worker's device
    unit.train(progress=False)
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    zero3 = zero_stage(recipe.finetune) == 3
    state = _gather_zero3(unit.model, rank) if zero3 else None
    if rank != 0:
        unit.release()
        return
    if zero3:  # the training copy leaves the GPU before the scoring copy arrives
        model_config = unit.model.config
        unit.release()
        scorer = _model_from_state(model_config, state, recipe.model.trust_remote_code)
        del state
    else:  # DDP: rank 0 already holds the whole trained model; score it where it is
        scorer = unit.model
        unit.release()
    scorer.to("cuda" if cuda else "cpu")
    scores = score_upstream(scorer, unit.tokenizer, upstream, recipe.score, progress=False)
    info = unit.info(train_workers=ctx.get_world_size())
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
