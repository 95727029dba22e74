"""KL replay in your own `transformers.Trainer` run (and TRL's `SFTTrainer`, a Trainer subclass).

`lmforget replay-set ... --objective kl --model BASE -o replay.jsonl` writes the replay examples as token
ids (`input_ids`, `completion_mask`) and, next to them, `replay.kl.safetensors`: the base model's top-k
log-probabilities at every completion position (format: `lmforget.replay.kl.write_targets`).
`KLReplayMixin` adds to each micro-batch's loss

    kl_weight x mean over replayed positions of KL(p_base || p_theta)

on `kl_batch_size` replay examples, drawn without replacement in a seeded order that is reshuffled on
every pass. Your own data, collator and loss stay as they are:

    trainer = KLReplayTrainer(model=..., args=..., train_dataset=..., kl_replay=load_kl_replay("replay.jsonl"))

    class SFTWithKLReplay(KLReplayMixin, SFTTrainer): ...   # TRL

The term counts once per optimizer step under gradient accumulation, as the trainer's own loss does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer

from lmforget.errors import LmforgetError
from lmforget.replay.kl import KLTargets, batch_kl, read_targets


def targets_path(jsonl: str | Path) -> Path:
    """Where `replay-set --objective kl` writes the targets of `jsonl`: NAME.kl.safetensors beside it."""
    jsonl = Path(jsonl)
    return jsonl.with_name(jsonl.stem + ".kl.safetensors")


class KLReplaySet:
    """Replay examples as token ids with their base-model targets at the completion positions."""

    def __init__(self, input_ids: list[list[int]], completion_masks: list[list[int]], targets: list[KLTargets]):
        for ids, mask, t in zip(input_ids, completion_masks, targets, strict=True):
            n = sum(mask[1:])
            if len(ids) != len(mask) or n != len(t) or mask[0]:
                raise LmforgetError(f"a replay example has {n} completion positions after the first token but "
                                    f"{len(t)} KL target rows")
        self.input_ids, self.completion_masks, self.targets = input_ids, completion_masks, targets

    def __len__(self) -> int:
        return len(self.input_ids)

    def batch(self, rows: list[int]) -> dict[str, torch.Tensor]:
        """Right-padded inputs of `rows` with the kl_* fields `lmforget.replay.kl.batch_kl` reads."""
        width = max(len(self.input_ids[r]) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        kl_rows, kl_cols = [], []
        for i, r in enumerate(rows):
            n = len(self.input_ids[r])
            ids[i, :n] = torch.tensor(self.input_ids[r])
            mask[i, :n] = 1
            pos = [t for t, m in enumerate(self.completion_masks[r]) if m]
            kl_rows += [i] * len(pos)
            kl_cols += [t - 1 for t in pos]  # the logits one position before predict the token
        t = [self.targets[r] for r in rows]
        return {"input_ids": ids, "attention_mask": mask, "kl_rows": torch.tensor(kl_rows),
                "kl_cols": torch.tensor(kl_cols), "kl_ids": torch.cat([x.ids for x in t]),
                "kl_logp": torch.cat([x.logp for x in t]), "kl_rest": torch.cat([x.rest for x in t])}


def load_kl_replay(jsonl: str | Path, targets: str | Path | None = None) -> KLReplaySet:
    """A replay set written by `lmforget replay-set --objective kl` (targets default: `targets_path`)."""
    jsonl = Path(jsonl)
    if not jsonl.is_file():
        raise LmforgetError(f"replay set not found: {jsonl}")
    records = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids, by_id, _ = read_targets(targets or targets_path(jsonl))
    if [r.get("id") for r in records] != ids:
        raise LmforgetError(f"{jsonl}: its records are not the ones the targets file was written for")
    if any("input_ids" not in r or "completion_mask" not in r for r in records):
        raise LmforgetError(f"{jsonl}: KL replay needs token ids; write it with `lmforget replay-set --objective kl`")
    return KLReplaySet([r["input_ids"] for r in records], [r["completion_mask"] for r in records],
                       [by_id[i] for i in ids])


class KLReplayMixin:
    """Trainer mix-in: the trainer's own loss + kl_weight x KL to the base model on replayed examples."""

    def __init__(self, *args, kl_replay: KLReplaySet, kl_weight: float = 1.0, kl_batch_size: int = 1,
                 kl_seed: int = 0, **kwargs):
        if len(kl_replay) == 0 or kl_batch_size < 1 or kl_weight < 0:
            raise LmforgetError("KL replay needs examples, kl_batch_size >= 1 and kl_weight >= 0")
        super().__init__(*args, **kwargs)
        self.kl_replay, self.kl_weight, self.kl_batch_size, self.kl_seed = kl_replay, kl_weight, kl_batch_size, kl_seed
        self.kl_values: list[float] = []  # the KL term of each micro-batch, for logging and tests
        self._order: list[int] = []
        self._passes = 0

    def _next_rows(self) -> list[int]:
        rows = []
        while len(rows) < min(self.kl_batch_size, len(self.kl_replay)):
            if not self._order:  # a new seeded pass over the replay set
                rng = np.random.default_rng([self.kl_seed, self._passes])
                self._order = rng.permutation(len(self.kl_replay)).tolist()
                self._passes += 1
            rows.append(self._order.pop(0))
        return rows

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        from lmforget.weightspace import added_loss_scale

        out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        loss = out[0] if return_outputs else out
        batch = {k: v.to(loss.device) for k, v in self.kl_replay.batch(self._next_rows()).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        kl = batch_kl(logits, batch).mean()
        self.kl_values.append(float(kl.detach()))
        loss = loss + self.kl_weight * added_loss_scale(self, num_items_in_batch) * kl
        return (loss, *out[1:]) if return_outputs else loss


class KLReplayTrainer(KLReplayMixin, Trainer):
    """`transformers.Trainer` with KL replay (`KLReplayMixin`)."""
