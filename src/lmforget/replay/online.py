"""Online targeted replay: start with random replay, measure forgetting mid-training, then target.

docs/protocol.md section 6: train the first 10% of steps with random replay; then score a fixed set of
probe examples with the same scorer (current weights vs the base model), complete the task's row
with a completer fitted on the training rows, and continue with targeted replay, keeping the data
order and the learning-rate schedule. The run stays one `Trainer.train()` call: a callback swaps
what the replay slots of a `ReplayMixture` hold, so optimizer, scheduler and sampler never restart.

Batch timing. accelerate's prepared dataloader fetches one batch ahead, and Trainer fetches all the
micro-batches of an optimizer step before running them; a batch fetched before a swap would still
hold the old replay examples. `MixtureTrainer` therefore serves the training set with a plain
single-process DataLoader (same random sampler, seeded with `data_seed`), so the batches of step
s + 1 are built only after `on_step_end(s)` has run: a swap at step s affects exactly the batches
of steps after s (tested). It is single-process by design; online replay refuses multi-GPU runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler
from transformers import Trainer, TrainerCallback

from lmforget.data.types import UpstreamExample
from lmforget.errors import LmforgetError
from lmforget.replay.mixture import ReplayMixture
from lmforget.replay.scores import predict_row
from lmforget.replay.selection import select

LOSS_WEIGHTINGS = ("token", "example")  # how a batch's loss averages: per token or per example
OBJECTIVES = ("nll", "kl")  # what replayed examples train (lmforget.replay.kl)


class MixtureTrainer(Trainer):
    """A Trainer whose training batches are built when they are consumed (no look-ahead).

    `loss_weighting` = "token": the mean over every loss token of the batch (transformers' default),
    so an example weighs as much as it has answer tokens (a 48-token replay continuation outweighs a
    2-token task answer 24 to 1); "example": each example's mean token loss, averaged over examples.
    """

    loss_weighting = "token"
    objective = "nll"  # kl: replay items train KL to the base model (their batches carry kl_* targets)
    kl_weight = 1.0  # objective kl: a replayed position's KL counts this many times

    @classmethod
    def weighted(cls, loss_weighting: str, objective: str = "nll", kl_weight: float = 1.0) -> type["MixtureTrainer"]:
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise LmforgetError(f"loss weighting must be 'token' or 'example', not {loss_weighting!r}")
        if objective not in OBJECTIVES:
            raise LmforgetError(f"replay objective must be 'nll' or 'kl', not {objective!r}")
        if not kl_weight > 0:
            raise LmforgetError(f"the KL weight must be > 0, not {kl_weight}")
        return type(f"MixtureTrainer_{loss_weighting}_{objective}", (cls,),
                    {"loss_weighting": loss_weighting, "objective": objective, "kl_weight": float(kl_weight)})

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.objective == "kl":
            return self._kl_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.loss_weighting == "token":
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        # A per-micro-batch mean, which Trainer must divide by the accumulation steps: newer transformers
        # read `loss_is_scaled_for_ga`, older 5.x releases divide whenever the model takes no loss kwargs.
        self.loss_is_scaled_for_ga = False
        self.model_accepts_loss_kwargs = False
        labels = inputs["labels"]
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        logits = outputs.logits[:, :-1].float()
        target = labels[:, 1:]
        mask = target != -100
        tok = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
        per_example = (tok * mask).sum(1) / mask.sum(1).clamp(min=1)
        loss = per_example[mask.any(1)].mean()
        return (loss, outputs) if return_outputs else loss

    def _kl_loss(self, model, inputs, return_outputs, num_items_in_batch):
        """Next-token loss on task tokens, `kl_weight` x KL to the base model at replayed tokens, then weighted
        as set: a replayed position counts as one loss token (token mean), a replayed example as one example."""
        from lmforget.replay.kl import batch_kl

        labels = inputs["labels"]
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        logits = outputs.logits.float()
        target = labels[:, 1:]
        mask = target != -100
        tok = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), target.clamp(min=0),
                                                reduction="none")
        if len(inputs["kl_rows"]):  # replayed positions: KL in place of the token's loss
            tok = tok.index_put((inputs["kl_rows"], inputs["kl_cols"]), self.kl_weight * batch_kl(logits, inputs))
        if self.loss_weighting == "token":  # as transformers does: over every loss token of the optimizer step
            self.loss_is_scaled_for_ga = num_items_in_batch is not None
            loss = (tok * mask).sum() / (num_items_in_batch if num_items_in_batch is not None else mask.sum())
        else:
            self.loss_is_scaled_for_ga = False
            per_example = (tok * mask).sum(1) / mask.sum(1).clamp(min=1)
            loss = per_example[mask.any(1)].mean()
        return (loss, outputs) if return_outputs else loss

    def get_train_dataloader(self) -> DataLoader:
        if self.args.world_size > 1:
            raise LmforgetError("online replay runs in a single process; launch it without accelerate/torchrun")
        generator = torch.Generator().manual_seed(self.args.data_seed if self.args.data_seed is not None
                                                  else self.args.seed)
        collate = self.data_collator
        if self.objective == "kl":
            from lmforget.replay.kl import collate_with_targets

            collate = collate_with_targets(collate)
        return DataLoader(self.train_dataset, batch_size=self._train_batch_size,
                          sampler=RandomSampler(self.train_dataset, generator=generator),
                          collate_fn=collate, num_workers=0,
                          drop_last=self.args.dataloader_drop_last)


def switch_step(total_steps: int, fraction: float) -> int:
    """The optimizer step after which targeted replay starts: round(fraction x steps), at least 1."""
    if total_steps < 2:
        raise LmforgetError(f"online replay needs at least 2 training steps (the plan has {total_steps}); "
                            "raise finetune.steps")
    return min(max(1, round(fraction * total_steps)), total_steps - 1)


class ReplaySwitch(TrainerCallback):
    """After optimizer step `step`, call `choose(model)` and put its examples into the mixture's slots."""

    def __init__(self, mixture: ReplayMixture, step: int,
                 choose: Callable[[torch.nn.Module], Sequence[UpstreamExample]]):
        self.mixture = mixture
        self.step = step
        self.choose = choose
        self.switched_at: int | None = None
        self.lr_at_switch: float | None = None

    def on_step_end(self, args, state, control, model=None, lr_scheduler=None, **kwargs):
        if state.global_step == self.step and self.switched_at is None:
            self.mixture.set_replay(self.choose(model))
            self.switched_at = state.global_step
            if lr_scheduler is not None:
                self.lr_at_switch = float(lr_scheduler.get_last_lr()[0])
        return control


@dataclass
class OnlineTarget:
    """Everything the switch needs to turn probe measurements into a targeted replay set.

    probe_cols: the fixed probe columns; Z_train: the completer's training rows; candidates: the pool columns
    replay may draw from. base_probe_nll (not a parameter): the probes' NLL under the model before training,
    set by `measure_base` with the very scorer, device and precision the switch then uses (so a probe's
    forgetting never mixes two precisions).
    """

    upstream: Sequence[UpstreamExample]
    probe_cols: np.ndarray
    Z_train: np.ndarray
    candidates: np.ndarray
    completer: str
    strategy: str
    n: int
    seed: int
    tokenizer: object
    score_options: dict
    temperature: float = 0.1
    group: int = 30
    record: dict = field(default_factory=dict)
    base_probe_nll: np.ndarray | None = field(default=None, init=False)

    def probe_nll(self, model) -> np.ndarray:
        """NLL of the probes under `model` as it is (its device and precision; training mode is kept)."""
        from lmforget.scoring import make_scorer

        scorer = make_scorer("hf", model, self.tokenizer, progress=False, **self.score_options)
        return np.array([r.nll for r in scorer.score([self.upstream[int(c)] for c in self.probe_cols])],
                        dtype=np.float64)

    def measure_base(self, model) -> None:
        """Score the probes before training: the 'before' of every probe's forgetting."""
        self.base_probe_nll = self.probe_nll(model)

    def __call__(self, model) -> list[UpstreamExample]:
        if self.base_probe_nll is None:
            raise LmforgetError("online replay: the probes' base NLL was not measured before training")
        observed = self.probe_nll(model) - self.base_probe_nll
        keep = ~np.isnan(observed)
        row = predict_row(self.Z_train, self.probe_cols[keep], observed[keep], self.completer, self.seed)
        scores = row[self.candidates]
        picks = self.candidates[select(self.strategy, scores, self.n, seed=self.seed,
                                       temperature=self.temperature, group=self.group)]
        self.record.update(probe_forgetting=float(np.nanmean(observed)), n_probes=int(keep.sum()),
                           chosen=[int(c) for c in picks], chosen_scores=[float(s) for s in row[picks]], row=row)
        return [self.upstream[int(c)] for c in picks]
