"""How a collection meets the hardware: combinations that cannot work are refused before any work, and
the processes of an `accelerate launch` wait for the main one while it scores.

Under `accelerate launch` every process trains each task together, then the main process alone
scores and writes the row. It needs the whole fine-tuned model for that, which ZeRO-3 and FSDP shard
over all processes; those launches are refused here (Ray Train, `executor.gpus_per_task > 1`, gathers
the weights on rank 0 instead). The other processes wait meanwhile, for as long as scoring takes:
hours for 10,000 documents or greedy generation, far beyond NCCL's 10-minute collective timeout.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

from lmforget.config import ExecutorConfig, FinetuneConfig, Recipe
from lmforget.errors import LmforgetError

# How long the other processes wait for the main one to score a model (per task).
WAIT_FOR_MAIN = timedelta(days=7)
_WAIT_GROUP: list = []  # the gloo process group of that wait, made on first use by every rank


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def zero_stage(cfg: FinetuneConfig) -> int:
    """The DeepSpeed ZeRO stage training runs under: the recipe's config, or accelerate's launch settings."""
    stage = 0
    if cfg.deepspeed:
        from lmforget.resources import resolve_path

        path = resolve_path(cfg.deepspeed)
        try:
            stage = int(json.loads(open(path, encoding="utf-8").read()).get("zero_optimization", {}).get("stage", 0))
        except (OSError, ValueError) as exc:
            raise LmforgetError(f"finetune.deepspeed: cannot read {path} ({exc})") from None
    if _env_true("ACCELERATE_USE_DEEPSPEED"):
        stage = max(stage, int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "0") or 0))
    return stage


def fsdp_launch() -> bool:
    return _env_true("ACCELERATE_USE_FSDP")


def units_on_cuda(recipe: Recipe, executor: ExecutorConfig | None = None) -> bool:
    """Whether the units will run on CUDA: decided where they run (Ray GPU workers, or this machine)."""
    from lmforget.models import resolve_device

    device = recipe.model.device
    if device in ("", "auto"):
        if executor is not None and executor.kind == "ray":
            return executor.gpus_per_task > 0
        device = resolve_device("auto")
    return str(device).startswith("cuda")


def check_launch(recipe: Recipe, executor: ExecutorConfig, cuda: bool) -> None:
    """Refuse, in one line each, the combinations that would hang, crash or silently mix results.

    `cuda`: whether the units train on CUDA (resolved by the caller where they will run).
    """
    ft, local = recipe.finetune, executor.kind == "local"
    stage = zero_stage(ft)
    if local and cuda and executor.gpus_per_task > 1:
        raise LmforgetError(f"executor.gpus_per_task={executor.gpus_per_task:g} needs --executor ray (each task "
                            "on that many Ray Train workers); the local executor trains on one device per process")
    if local and (stage == 3 or fsdp_launch()):
        what = "ZeRO-3" if stage == 3 else "FSDP"
        raise LmforgetError(f"{what} with the local executor is not supported: only the main process scores, and "
                            f"{what} shards the fine-tuned weights over all of them; use --executor ray with "
                            "executor.gpus_per_task > 1 (rank 0 gathers the weights), or ZeRO-2")
    if ft.method == "lora" and stage == 3:
        raise LmforgetError("LoRA with ZeRO-3 is not supported: merging the adapters needs the full base weights, "
                            "which ZeRO-3 shards; use ZeRO-2 or full fine-tuning")
    if local and cuda and ft.optimizer.startswith("paged_"):
        raise LmforgetError(f"finetune.optimizer={ft.optimizer} with the local executor: bitsandbytes' paged "
                            "buffers are not freed between tasks in one process; use adamw_bnb_8bit, or "
                            "--executor ray (one process per GPU task)")
    if recipe.score.backend == "vllm" and "expandable_segments:true" in \
            os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "").replace(" ", "").lower():
        raise LmforgetError("score.backend=vllm with PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True: vLLM's "
                            "sleep mode cannot use expandable segments; unset it")
    if local and cuda:
        from lmforget.models import native_bf16

        if not native_bf16() and (ft.bf16 is True or recipe.score.dtype == "bfloat16"):
            raise LmforgetError("bf16 was asked for (finetune.bf16 or score.dtype) but this GPU only emulates it "
                                "(compute capability < 8.0); set finetune.bf16=false score.dtype=float32")


def close_vllm_engine() -> None:
    """Close the process's vLLM engine, if one was built (its weights folder goes with it)."""
    import sys

    backend = sys.modules.get("lmforget.scoring.vllm")
    if backend is not None:
        backend.close_engine()


def launch_state():
    """accelerate's process state, made first here: on a machine without CUDA, `PartialState()` takes a
    multi-process launch (torchrun, `accelerate launch --cpu`) for a single process, and every rank
    would then score and write as if it were the main one."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def prepare_wait() -> None:
    """Make the group `wait_for_main` waits on, while every process is at the same point (its making
    is itself a collective, bounded by the default group's timeout)."""
    import torch.distributed as dist

    if _WAIT_GROUP or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    _WAIT_GROUP.append(dist.new_group(backend="gloo", timeout=WAIT_FOR_MAIN))


def wait_for_main() -> None:
    """Every process of a launch waits here until the main one has scored and written the current unit.

    A barrier on a gloo group of its own with a long timeout: the default group's (NCCL: 10 minutes)
    is for training collectives, and scoring takes as long as it takes. No GPU is held while waiting.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    prepare_wait()
    dist.barrier(group=_WAIT_GROUP[0])
