"""Online replay: the swap happens at the intended step, with an unbroken LR schedule and data order."""

from __future__ import annotations

import pytest
from transformers import TrainerCallback

from lmforget.config import FinetuneConfig
from lmforget.data.types import TaskExample, TaskSet, UpstreamExample
from lmforget.errors import LmforgetError
from lmforget.finetune import train
from lmforget.replay.mixture import ReplayMixture
from lmforget.replay.online import MixtureTrainer, ReplaySwitch, switch_step

CFG = FinetuneConfig(lr=1e-3, steps=6, warmup_steps=1, effective_batch=4, batch_size=2, max_length=64,
                     optimizer="adamw_torch", seed=0)
UPSTREAM = [UpstreamExample(id=f"u{i}", text=f"upstream example {i}: some words to train on") for i in range(8)]
TASK = TaskSet("t", "g", [TaskExample.from_prompt(f"What is {i} plus {i}?", str(2 * i)) for i in range(9)])


class StepBoundaries(TrainerCallback):
    """How many items had been fetched when each optimizer step ended."""

    def __init__(self, mixture: ReplayMixture):
        self.mixture, self.ends = mixture, []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(len(self.mixture.trace))


def _run(switch_at: int | None):
    from lmforget.models import load_model

    model, tokenizer = load_model("tiny:llama", device="cpu", dtype="float32", seed=0)  # fresh: it is trained
    mixture = ReplayMixture.build(tokenizer, TASK, CFG, UPSTREAM[:2], heldout_ids=["u7"], trace=True)
    bounds = StepBoundaries(mixture)
    callbacks = [bounds]
    switch = None
    if switch_at is not None:
        switch = ReplaySwitch(mixture, switch_at, lambda m: UPSTREAM[4:6])
        callbacks.insert(0, switch)
    result = train(model, tokenizer, mixture, CFG, max_steps=6, callbacks=callbacks, progress=False,
                   trainer_cls=MixtureTrainer)
    lrs = [e["learning_rate"] for e in result.log if "learning_rate" in e]
    return mixture, bounds.ends, lrs, switch, result


def test_switch_at_intended_step_keeps_lr_schedule_and_data_order() -> None:
    plain, plain_ends, plain_lr, _, plain_result = _run(None)
    mixed, ends, lr, switch, result = _run(2)
    assert result.steps == plain_result.steps == 6
    assert switch.switched_at == 2
    # unbroken LR schedule: identical to the run without a switch, warm-up then linear decay
    assert lr == pytest.approx(plain_lr) and len(lr) == 6
    assert lr[0] == 0.0 and all(a > b for a, b in zip(lr[1:], lr[2:]))
    # unchanged data order: the same dataset indices are drawn in the same order
    assert [i for i, _ in mixed.trace] == [i for i, _ in plain.trace]
    assert ends == plain_ends
    # the swap affects exactly the batches after step 2: everything fetched by the end of step 2
    # saw the first replay set (generation 0), everything after it the second (generation 1)
    cut = ends[1]
    assert cut > 0 and len(mixed.trace) > cut
    assert {g for _, g in mixed.trace[:cut]} == {0}
    assert {g for _, g in mixed.trace[cut:]} == {1}
    assert mixed.replay_ids == ["u4", "u5"]
    # replay slots were actually drawn on both sides of the switch
    slots = [k for k, (i, _) in enumerate(mixed.trace) if i >= mixed.n_task]
    assert any(k < cut for k in slots) and any(k >= cut for k in slots)
    # the weights differ once the replayed content differs
    diff = sum(float((a - b).abs().sum()) for a, b in zip(result.model.parameters(), plain_result.model.parameters()))
    assert diff > 0


def test_switch_step_formula() -> None:
    assert switch_step(100, 0.1) == 10
    assert switch_step(13, 0.1) == 1  # at least one step of random replay
    assert switch_step(5, 0.25) == 1
    assert switch_step(2, 0.9) == 1  # and at least one step of targeted replay
    with pytest.raises(LmforgetError, match="at least 2"):
        switch_step(1, 0.1)
