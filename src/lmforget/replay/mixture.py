"""Replay mixtures: how many upstream examples join a task, how long to train, and the dataset.

docs/protocol.md section 6: with replay rate r, n_rep = floor(n_task * r) + 1 upstream examples are
mixed into the task's training data and the training steps are stretched by (1 + r).

`ReplayMixture` is a torch Dataset with a fixed index layout: positions [0, n_task) are the task's
examples (encoded by the fine-tuning hook `build_train_set`), positions [n_task, n_task + n_rep)
are replay *slots*. The sampler only sees the length, so swapping what the slots hold (online
replay) changes neither the data order nor the number of steps. Every mixture refuses held-out
(evaluation) examples, at build time and at every swap. With KL replay (`targets`, from
`lmforget.replay.kl.base_targets`), a replay item also carries its base model targets under "kl".
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from torch.utils.data import Dataset

from lmforget.config import FinetuneConfig
from lmforget.data.types import TaskSet, UpstreamExample
from lmforget.encoding import Encoded, encode_upstream
from lmforget.errors import LmforgetError
from lmforget.replay.heldout import check_disjoint


def n_replay(n_task: int, rate: float) -> int:
    """Replayed examples for a task of `n_task` training examples: floor(n_task * r) + 1."""
    if n_task < 1:
        raise LmforgetError("a replay mixture needs at least one task example")
    if not 0 < rate < 1:
        raise LmforgetError(f"replay rate must be in (0, 1), got {rate}")
    return math.floor(n_task * rate) + 1


def replay_stretch(rate: float) -> float:
    """Training steps are stretched by (1 + r) so the task itself gets as many updates as without replay."""
    return 1.0 + rate


def mixture_steps(n_task: int, n_rep: int, cfg: FinetuneConfig, rate: float | None) -> int:
    """Optimizer steps of a mixture (no stretch without replay), via `finetune.plan_steps`."""
    from lmforget.finetune import plan_steps

    if not n_rep or rate is None:
        return plan_steps(n_task, cfg)
    return plan_steps(n_task + n_rep, cfg, stretch=replay_stretch(rate))


class ReplayMixture(Dataset):
    """Task examples + swappable replay slots, never holding a held-out example.

    `trace`, when a list, records (index, generation) of every item fetched; the generation counts
    the swaps, so a test can tell which replay set each batch saw.
    """

    def __init__(self, task_items: Sequence[Encoded], replay: Sequence[UpstreamExample], tokenizer,
                 max_length: int, heldout_ids: Iterable[str] = (), trace: bool = False, targets: dict | None = None):
        if not task_items and not replay:
            raise LmforgetError("a replay mixture needs at least one example")
        self.task_items = list(task_items)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.heldout_ids = frozenset(map(str, heldout_ids))
        self.targets = targets  # KL replay: example id -> KLTargets (None: next-token loss)
        self.generation = -1
        self.replay: list[UpstreamExample] = []
        self.replay_items: list[Encoded] = []
        self.trace: list[tuple[int, int]] | None = [] if trace else None
        # loss tokens and examples actually served for training, by origin (the replay share of a cell)
        self.served = {"task_tokens": 0, "replay_tokens": 0, "task_examples": 0, "replay_examples": 0}
        self._served_replay: dict[str, None] = {}  # ids of the replay examples served, in first-served order
        self.set_replay(replay)

    @classmethod
    def build(cls, tokenizer, task: TaskSet, cfg: FinetuneConfig, replay: Sequence[UpstreamExample],
              heldout_ids: Iterable[str] = (), trace: bool = False) -> "ReplayMixture":
        """The task's training set from the fine-tuning hook, plus `replay` in the slots."""
        from lmforget.finetune import build_train_set

        return cls(build_train_set(tokenizer, task, cfg), replay, tokenizer, cfg.max_length, heldout_ids, trace)

    @property
    def n_task(self) -> int:
        return len(self.task_items)

    @property
    def n_rep(self) -> int:
        return len(self.replay_items)

    @property
    def replay_ids(self) -> list[str]:
        """The examples in the slots now (after an online swap: the chosen ones)."""
        return [ex.id for ex in self.replay]

    @property
    def trained_replay_ids(self) -> list[str]:
        """The replay examples training actually read (an online swap after step s leaves the slots read
        before it with their first examples), each once, in the order first read."""
        return list(self._served_replay)

    def replay_share(self) -> dict:
        """Share of the served loss tokens and of the served examples that were replay."""
        s = self.served
        tok = s["task_tokens"] + s["replay_tokens"]
        ex = s["task_examples"] + s["replay_examples"]
        return {"replay_token_share": s["replay_tokens"] / tok if tok else None,
                "replay_example_share": s["replay_examples"] / ex if ex else None, **s}

    def set_replay(self, replay: Sequence[UpstreamExample]) -> None:
        """Put `replay` into the slots (same count as before, after the first call); ids must be unique."""
        replay = list(replay)
        if self.generation >= 0 and len(replay) != len(self.replay_items):
            raise LmforgetError(f"a swap must keep the number of replay slots ({len(self.replay_items)}), "
                                f"got {len(replay)} examples")
        ids = [ex.id for ex in replay]
        if len(set(ids)) != len(ids):
            raise LmforgetError("replay examples must be distinct (sampling is without replacement)")
        check_disjoint(ids, self.heldout_ids)
        if self.targets is not None:
            missing = [i for i in ids if i not in self.targets]
            if missing:
                raise LmforgetError(f"KL replay: no base model targets for replay example {missing[0]!r}")
        items = [encode_upstream(self.tokenizer, ex, self.max_length) for ex in replay]
        empty = [ex.id for ex, enc in zip(replay, items, strict=True) if enc.n_trained == 0]
        if empty:
            raise LmforgetError(f"replay example {empty[0]!r} has no trainable tokens; keep it out of the pool")
        self.replay, self.replay_items = replay, items
        self.generation += 1

    def __len__(self) -> int:
        return self.n_task + self.n_rep

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        if self.trace is not None:
            self.trace.append((int(i), self.generation))
        origin = "task" if i < self.n_task else "replay"
        enc = self.task_items[i] if i < self.n_task else self.replay_items[i - self.n_task]
        self.served[f"{origin}_tokens"] += enc.n_trained
        self.served[f"{origin}_examples"] += 1
        if origin == "replay":
            self._served_replay.setdefault(self.replay[i - self.n_task].id, None)
        item = {"input_ids": enc.input_ids, "attention_mask": [1] * len(enc.input_ids), "labels": enc.labels()}
        if origin == "replay" and self.targets is not None:
            item["kl"] = self.targets[self.replay[i - self.n_task].id]
        return item
