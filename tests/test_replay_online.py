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


class Consumed(TrainerCallback):
    """The token rows each training forward pass consumed, and how many passes each step had run."""

    def __init__(self, model):
        self.rows: list[list[tuple[int, ...]]] = []
        self.step_ends: list[int] = []
        model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        if module.training:
            ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
            self.rows.append([tuple(r[m.bool()].tolist()) for r, m in zip(ids, mask, strict=True)])

    def on_step_end(self, args, state, control, **kwargs):
        self.step_ends.append(len(self.rows))

    def steps_of(self, sequences: set) -> set[int]:
        """1-based optimizer steps whose micro-batches contained one of `sequences`."""
        out = set()
        for k, rows in enumerate(self.rows):
            if any(r in sequences for r in rows):
                out.add(next(s for s, end in enumerate(self.step_ends, 1) if k < end))
        return out


def _run(switch_at: int | None):
    from lmforget.models import load_model

    model, tokenizer = load_model("tiny:llama", device="cpu", dtype="float32", seed=0)  # fresh: it is trained
    mixture = ReplayMixture.build(tokenizer, TASK, CFG, UPSTREAM[:2], heldout_ids=["u7"], trace=True)
    consumed = Consumed(model)
    callbacks = [consumed]
    switch = None
    if switch_at is not None:
        switch = ReplaySwitch(mixture, switch_at, lambda m: UPSTREAM[4:6])
        callbacks.insert(0, switch)
    result = train(model, tokenizer, mixture, CFG, max_steps=6, callbacks=callbacks, progress=False,
                   trainer_cls=MixtureTrainer)
    lrs = [e["learning_rate"] for e in result.log if "learning_rate" in e]
    return mixture, consumed, lrs, switch, result


def test_switch_at_intended_step_keeps_lr_schedule_and_data_order(tiny_tokenizer) -> None:
    plain, plain_consumed, plain_lr, _, plain_result = _run(None)
    mixed, consumed, lr, switch, result = _run(2)
    assert result.steps == plain_result.steps == 6
    assert switch.switched_at == 2
    # unbroken LR schedule: identical to the run without a switch, warm-up then linear decay
    assert lr == pytest.approx(plain_lr) and len(lr) == 6
    assert lr[0] == 0.0 and all(a > b for a, b in zip(lr[1:-1], lr[2:], strict=True))
    # unchanged data order: the same dataset indices are drawn in the same order
    assert [i for i, _ in mixed.trace] == [i for i, _ in plain.trace]
    assert consumed.step_ends == plain_consumed.step_ends
    # the swap affects exactly the steps after 2: what the model trained on, batch by batch
    first = ReplayMixture.build(tiny_tokenizer, TASK, CFG, UPSTREAM[:2])
    old = {tuple(e.input_ids) for e in first.replay_items}
    new = {tuple(e.input_ids) for e in mixed.replay_items}
    assert old and new and not old & new
    old_steps, new_steps = consumed.steps_of(old), consumed.steps_of(new)
    assert old_steps and new_steps
    assert max(old_steps) <= 2 < min(new_steps)
    assert consumed.steps_of(old | new) == plain_consumed.steps_of(old)  # same slots, same steps
    assert mixed.replay_ids == ["u4", "u5"]
    # what training read: the slots' first examples before the swap, the chosen ones after it
    slots = {0: UPSTREAM[:2], 1: UPSTREAM[4:6]}
    read = [slots[gen][i - mixed.n_task].id for i, gen in mixed.trace if i >= mixed.n_task]
    assert mixed.trained_replay_ids == list(dict.fromkeys(read))
    assert {"u0", "u1"} & set(read) and {"u4", "u5"} & set(read)
    assert plain.trained_replay_ids == list(dict.fromkeys(
        UPSTREAM[i - plain.n_task].id for i, _ in plain.trace if i >= plain.n_task))
    # the weights differ once the replayed content differs
    diff = sum(float((a - b).detach().abs().sum()) for a, b in zip(result.model.parameters(),
                                                                plain_result.model.parameters(), strict=True))
    assert diff > 0


def test_switch_step_formula() -> None:
    assert switch_step(100, 0.1) == 10
    assert switch_step(13, 0.1) == 1  # at least one step of random replay
    assert switch_step(5, 0.25) == 1
    assert switch_step(2, 0.9) == 1  # and at least one step of targeted replay
    with pytest.raises(LmforgetError, match="at least 2"):
        switch_step(1, 0.1)


def test_example_mean_loss_weights_each_example_equally() -> None:
    """'example': the mean of per-example token means; 'token' (default): the mean over all loss tokens."""
    from types import SimpleNamespace

    import torch

    labels = torch.tensor([[-100, 5, 6, -100, -100, -100], [-100, 1, 2, 3, 4, 7]])  # 2 and 5 loss tokens
    logits = torch.zeros(2, 6, 8)
    logits[0, torch.arange(5), labels[0, 1:].clamp(min=0)] = 30.0  # example 0 predicted perfectly: loss ~0
    fake = lambda input_ids, attention_mask: SimpleNamespace(logits=logits)  # noqa: E731
    inputs = {"input_ids": torch.zeros(2, 6, dtype=torch.long), "attention_mask": torch.ones(2, 6, dtype=torch.long),
              "labels": labels}
    trainer_cls = MixtureTrainer.weighted("example")
    trainer = trainer_cls.__new__(trainer_cls)  # compute_loss needs no Trainer state for 'example'
    example = float(trainer.compute_loss(fake, inputs))
    uniform = float(torch.log(torch.tensor(8.0)))  # example 1: uniform logits
    assert example == pytest.approx(uniform / 2, rel=1e-4)  # each example counts once
    assert uniform * 5 / 7 == pytest.approx(float(torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 8), labels[:, 1:].reshape(-1), ignore_index=-100)), rel=1e-4)  # token mean differs
    with pytest.raises(LmforgetError, match="weighting"):
        MixtureTrainer.weighted("sentence")


def test_mixture_counts_the_loss_tokens_replay_took(tiny_tokenizer) -> None:
    mixture = ReplayMixture.build(tiny_tokenizer, TASK, CFG, UPSTREAM[:2])
    for i in range(len(mixture)):
        mixture[i]
    share = mixture.replay_share()
    loss_tokens = lambda items: sum(sum(t != -100 for t in e.labels()) for e in items)  # noqa: E731
    task_tokens, replay_tokens = loss_tokens(mixture.task_items), loss_tokens(mixture.replay_items)
    assert share["replay_token_share"] == pytest.approx(replay_tokens / (task_tokens + replay_tokens))
    assert share["task_tokens"] == task_tokens > sum(e.n_scored for e in mixture.task_items)  # + end of turn
    assert share["replay_example_share"] == pytest.approx(2 / 11)
    only = ReplayMixture([], UPSTREAM[:2], tiny_tokenizer, 64)  # replay-only: no task examples
    assert len(only) == 2


def test_example_mean_loss_does_not_depend_on_gradient_accumulation() -> None:
    """'example' weighting: 1 example x 4 accumulation steps trains the same weights as 4 examples x 1."""
    import torch

    from lmforget.models import load_model

    start = torch.cat([p.detach().flatten() for p in load_model("tiny:llama", device="cpu", seed=0)[0].parameters()])
    weights = []
    for batch_size in (4, 1):
        model, tokenizer = load_model("tiny:llama", device="cpu", dtype="float32", seed=0)
        cfg = CFG.model_copy(update={"batch_size": batch_size, "max_grad_norm": 1e9, "warmup_steps": 0})
        mixture = ReplayMixture.build(tokenizer, TASK, cfg, UPSTREAM[:2])
        train(model, tokenizer, mixture, cfg, max_steps=1, progress=False,
              trainer_cls=MixtureTrainer.weighted("example"))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert float((weights[0] - start).abs().max()) > 1e-4  # the step moved the weights
    assert torch.allclose(weights[0], weights[1], atol=1e-6)


def test_online_target_measures_probes_before_and_after_with_one_scorer() -> None:
    """The probes' 'before' is scored in the training process like the 'after': an untrained model forgets
    exactly nothing (no precision or batching mismatch), and the picks follow the completed row."""
    import numpy as np

    from lmforget.models import load_model
    from lmforget.replay.online import OnlineTarget

    model, tokenizer = load_model("tiny:llama", device="cpu", dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    target = OnlineTarget(upstream=UPSTREAM, probe_cols=np.array([0, 1, 2]),
                          Z_train=rng.normal(size=(4, 8)), candidates=np.array([3, 4, 5, 6]), completer="additive",
                          strategy="top", n=2, seed=0, tokenizer=tokenizer,
                          score_options={"max_length": 64, "token_budget": 4096, "batch_size": 2})
    with pytest.raises(LmforgetError, match="not measured"):
        target(model)
    target.measure_base(model)
    chosen = target(model)
    assert target.record["probe_forgetting"] == 0.0 and target.record["n_probes"] == 3
    cand = np.array([3, 4, 5, 6])
    top = cand[np.argsort(-target.record["row"][cand], kind="stable")[:2]]
    assert [ex.id for ex in chosen] == [UPSTREAM[int(c)].id for c in top] and target.record["chosen"] == list(top)
