"""Fine-tune one task: full fine-tuning or LoRA on transformers' Trainer, with the paper's knobs.

Trainer keeps accelerate's DDP/FSDP/DeepSpeed launch paths working unchanged (`accelerate launch
-m lmforget ...`). The training set is a plain list of `Encoded` examples or any torch Dataset of
the same items, so a replay mixture (`lmforget.replay.mixture.ReplayMixture`) needs no special case
here. Loss is on the answer and the end-of-turn token after it (`Encoded.loss_mask`),
not on the prompt.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch.utils.data import Dataset

from lmforget.config import FinetuneConfig
from lmforget.data.types import TaskSet
from lmforget.encoding import Encoded, encode_task_example
from lmforget.errors import LmforgetError
from lmforget.resources import resolve_path

log = logging.getLogger(__name__)


class EncodedDataset(Dataset):
    """Token ids + labels (answer and end-of-turn), one item per example; the collator pads."""

    def __init__(self, items: Sequence[Encoded]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        enc = self.items[i]
        return {"input_ids": enc.input_ids, "attention_mask": [1] * len(enc.input_ids), "labels": enc.labels()}


def encode_task(tokenizer, task: TaskSet, max_length: int) -> list[Encoded]:
    """Encode the task's training examples; an example whose answer is cut away entirely is dropped."""
    items = [encode_task_example(tokenizer, ex, max_length) for ex in task.train]
    kept = [e for e in items if e.n_scored > 0]
    if not kept:
        raise LmforgetError(f"task {task.name!r}: no training example has answer tokens within "
                            f"max_length={max_length}")
    if len(kept) < len(items):
        log.warning("task %r: skipped %d of %d training examples with no answer tokens (an empty answer)",
                    task.name, len(items) - len(kept), len(items))
    return kept


def build_train_set(tokenizer, task: TaskSet, cfg: FinetuneConfig) -> list[Encoded]:
    """The task's training examples, encoded (a replay mixture adds its upstream examples to these)."""
    return encode_task(tokenizer, task, cfg.max_length)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def plan_steps(n_examples: int, cfg: FinetuneConfig, stretch: float = 1.0) -> int:
    """Optimizer steps: `cfg.steps * stretch`, capped at `cfg.max_epochs` passes over the data."""
    cap = math.ceil(cfg.max_epochs * n_examples / cfg.effective_batch)
    return max(1, min(math.ceil(cfg.steps * stretch), cap))


def _collate(tokenizer):
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        out = {}
        for key, pad in (("input_ids", pad_id), ("attention_mask", 0), ("labels", -100)):
            out[key] = torch.tensor([b[key] + [pad] * (width - len(b[key])) for b in batch], dtype=torch.long)
        return out

    return collate


@dataclass
class TrainResult:
    model: torch.nn.Module
    steps: int
    train_loss: float
    seconds: float
    n_examples: int
    log: list[dict] = field(default_factory=list)


def _cuda_here() -> bool:
    return torch.cuda.is_available()


def resolve_bf16(cfg: FinetuneConfig, cuda: bool | None = None) -> bool:
    """`auto`: bf16 autocast on a GPU with native bf16. `cuda`: whether the training runs on CUDA (None:
    this machine); a driver without a GPU that plans GPU workers assumes they have native bf16."""
    if cfg.bf16 != "auto":
        return bool(cfg.bf16)
    from lmforget.models import native_bf16

    if cuda is None or _cuda_here():
        return native_bf16()
    return bool(cuda)


def resolve_optimizer(cfg: FinetuneConfig, cuda: bool | None = None) -> str:
    """`auto`: 8-bit AdamW with bitsandbytes on CUDA, else adamw_torch.

    The non-paged `adamw_bnb_8bit`: bitsandbytes' paged optimizers allocate CUDA managed memory that
    is not returned when the optimizer is freed, so in a process that trains task after task it piles up.
    """
    if cfg.optimizer != "auto":
        return cfg.optimizer
    if _cuda_here() if cuda is None else cuda:
        try:
            import bitsandbytes  # noqa: F401

            return "adamw_bnb_8bit"
        except ImportError:
            pass
    return "adamw_torch"


def resolve_auto(cfg: FinetuneConfig, cuda: bool | None = None) -> FinetuneConfig:
    """The settings with `auto` replaced by what the training machine gives, so a run's fingerprint
    records what was computed (a run resumed on a machine without bitsandbytes is refused, not mixed)."""
    return cfg.model_copy(update={"optimizer": resolve_optimizer(cfg, cuda), "bf16": resolve_bf16(cfg, cuda)})


def free_memory() -> None:
    """Collect reference cycles and return cached CUDA blocks: what one task leaves must not sit under
    the next one (a dropped model in a cycle is only freed by the collector)."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def drop_autocast(model):
    """Remove the autocast wrapper accelerate installs on `model.forward` for mixed precision.

    Trainer never removes it, so a model trained with bf16 would keep computing its full forward and
    `generate()` in bf16 (the scored "after" at another precision than "before"), and the wrapper, a
    method bound to the model in the model's own __dict__, is a reference cycle that keeps the model
    alive until a garbage collection. accelerate keeps the forward it replaced as `_original_forward`;
    that is put back (`unwrap_model(keep_fp32_wrapper=False)` would also strip transformers' own
    decorators of `forward`, as it unwinds every `__wrapped__`).
    """
    original = model.__dict__.pop("_original_forward", None)
    if original is None:
        return model
    if getattr(original, "__func__", None) is type(model).forward:
        model.__dict__.pop("forward", None)  # the class's own method again: no instance attribute, no cycle
    else:
        model.forward = original
    return model


def upcast_trainable(model) -> None:
    """Full fine-tuning keeps fp32 master weights: a fp16/bf16 checkpoint is upcast before training.

    At the paper's lr 2e-6 most AdamW updates are smaller than half an ulp of a bf16/fp16 weight and
    would round away; the forward pass still runs in bf16 on CUDA through the Trainer's autocast.
    """
    if any(p.requires_grad and p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters()):
        model.float()


def wrap_lora(model, cfg: FinetuneConfig):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(cfg.seed)  # LoRA's A matrices are random: seed them
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def train(model, tokenizer, train_set: Dataset | Sequence[Encoded], cfg: FinetuneConfig, *,
          max_steps: int | None = None, callbacks: Sequence = (), progress: bool = True,
          description: str = "fine-tuning", trainer_cls: type | None = None) -> TrainResult:
    """Fine-tune `model` in place (LoRA adapters are merged back) and return it with a log.

    `trainer_cls` is a `Trainer` subclass for callers that change how batches are fetched
    (online replay swaps replay examples mid-training and needs batches built when consumed).
    """
    from transformers import PrinterCallback, Trainer, TrainingArguments

    dataset = train_set if isinstance(train_set, Dataset) else EncodedDataset(train_set)
    if len(dataset) == 0:
        raise LmforgetError(f"{description}: empty training set")
    steps = max_steps or plan_steps(len(dataset), cfg)
    if cfg.l2sp and cfg.method == "lora":
        raise LmforgetError("finetune.l2sp applies to full fine-tuning; set it to 0 with finetune.method=lora")
    if cfg.method == "lora":
        model = wrap_lora(model, cfg)  # peft keeps the trainable adapters in fp32
    else:
        upcast_trainable(model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    cbs = list(callbacks)
    if progress:
        from lmforget.progress import TrainProgress

        cbs.append(TrainProgress(description))
    with tempfile.TemporaryDirectory(prefix="lmforget-train-") as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum(world_size()),
            learning_rate=cfg.lr,
            lr_scheduler_type=cfg.scheduler,
            warmup_steps=cfg.warmup_steps,
            weight_decay=cfg.weight_decay,
            max_grad_norm=cfg.max_grad_norm,
            optim=resolve_optimizer(cfg),
            bf16=resolve_bf16(cfg),
            seed=cfg.seed,
            data_seed=cfg.seed,
            use_cpu=not torch.cuda.is_available(),
            save_strategy="no",
            logging_strategy="steps",
            logging_steps=1,
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            remove_unused_columns=False,
            deepspeed=resolve_path(cfg.deepspeed) if cfg.deepspeed else None,
        )
        cls = trainer_cls or Trainer
        if cfg.l2sp:  # L2-SP: the loss adds a pull towards the weights training starts from
            from lmforget.weightspace import with_l2sp

            cls = with_l2sp(cls, cfg.l2sp)
        trainer = cls(model=model, args=args, train_dataset=dataset, data_collator=_collate(tokenizer), callbacks=cbs)
        trainer.remove_callback(PrinterCallback)  # stdout is reserved for --json output
        start = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - start
        log = [dict(entry) for entry in trainer.state.log_history]
        model = drop_autocast(trainer.model)
        del trainer
    if cfg.method == "lora":
        model = model.merge_and_unload()
    model.eval()
    return TrainResult(model=model, steps=output.global_step, train_loss=float(output.training_loss),
                       seconds=seconds, n_examples=len(dataset), log=log)
