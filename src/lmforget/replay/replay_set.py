"""A replay set for a user's own trainer: predict a new task's forgetting, pick, write JSONL.

Given a forgetting matrix of earlier tasks (Z.npz), a few measured entries of the new task's row
(a probe file `id,forgetting`, see lmforget.probe: the NLL increase of those upstream examples after
fine-tuning on the new task, as `lmforget probe` measures it), and the upstream data, complete the
row with a completer and choose `budget` examples. The output is one JSON object per line that
TRL's SFTTrainer and `datasets.interleave_datasets` take directly: raw text -> {"text": ...},
chats -> {"messages": [{"role", "content"}, ...]}, self-sampled examples -> their token ids
{"input_ids", "completion_mask", "prompt_len"} (only the continuation is trained; `text` is for
reading), plus "id" and "score" (the predicted forgetting; drop both columns before interleaving
with a dataset that lacks them).

With the KL objective (`add_kl_targets`) every record carries the token ids lmforget trains
(`input_ids`, `completion_mask`), and NAME.kl.safetensors beside NAME.jsonl holds the base model's top-k
log-probabilities at each completion position, for `lmforget.replay.trainer.KLReplayMixin`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmforget.errors import LmforgetError
from lmforget.probe import read_probe
from lmforget.replay.heldout import split_heldout
from lmforget.replay.scores import predict_row
from lmforget.replay.selection import STRATEGIES, select


@dataclass
class ReplaySet:
    records: list[dict]
    n_pool: int
    n_probes: int
    n_heldout: int
    method: str
    strategy: str
    examples: list = field(default_factory=list, repr=False)  # the chosen UpstreamExamples, in record order
    targets: dict | None = field(default=None, repr=False)  # KL objective: id -> KLTargets
    targets_meta: dict = field(default_factory=dict, repr=False)

    def summary(self) -> dict:
        scores = [r["score"] for r in self.records]
        return {"n": len(self.records), "pool": self.n_pool, "probes": self.n_probes, "heldout": self.n_heldout,
                "method": self.method, "strategy": self.strategy,
                "mean_score": float(np.mean(scores)) if scores else None}


def build_replay_set(matrix_path: str | Path, probe_path: str | Path, data: str, budget: int, *,
                     method: str = "lowrank", strategy: str = "softmax", temperature: float = 0.1, group: int = 30,
                     heldout: int = 0, seed: int = 0) -> ReplaySet:
    """Validate the inputs, complete the new row, and choose `budget` replay examples."""
    from lmforget.data import load_upstream_arg
    from lmforget.matrix import ForgettingMatrix
    from lmforget.predict import list_completers

    if method not in list_completers("logppl"):
        raise LmforgetError(f"unknown prediction method {method!r}; choose from {', '.join(list_completers('logppl'))}")
    if strategy not in STRATEGIES:
        raise LmforgetError(f"unknown selection strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if budget < 1:
        raise LmforgetError(f"--budget must be at least 1 (got {budget})")
    matrix = ForgettingMatrix.load(matrix_path)
    if matrix.kind != "logppl":
        raise LmforgetError(f"{matrix_path}: replay sets need a log-perplexity matrix (kind is {matrix.kind!r})")
    probe = read_probe(probe_path)
    probe_row = probe.row(matrix.examples.tolist(), source=str(probe_path))
    upstream = load_upstream_arg(data)
    by_id = {ex.id: ex for ex in upstream}
    in_data = np.array([str(e) in by_id for e in matrix.examples])
    if not in_data.any():
        raise LmforgetError(f"--upstream {data}: none of its ids are columns of {matrix_path}")
    n_heldout = 0
    allowed = in_data.copy()
    if heldout:
        split = split_heldout(matrix.examples.tolist(), heldout, seed)
        allowed[split.heldout] = False
        n_heldout = len(split.heldout)
    probe_cols = np.flatnonzero(~np.isnan(probe_row))
    row = predict_row(matrix.Z, probe_cols, probe_row[probe_cols], method, seed)
    pool = np.flatnonzero(allowed & np.isfinite(row))
    if budget > len(pool):
        raise LmforgetError(f"--budget {budget} is larger than the replay pool ({len(pool)} upstream examples "
                            f"with text and a prediction{', outside the held-out set' if heldout else ''})")
    picks = pool[select(strategy, row[pool], budget, seed=seed, temperature=temperature, group=group)]
    chosen = [by_id[str(matrix.examples[c])] for c in picks]
    if len({_shape(ex) for ex in chosen}) > 1:
        raise LmforgetError(f"--upstream {data}: mixes {' and '.join(sorted({_shape(ex) for ex in chosen}))}; a "
                            "replay set must have one shape (filter the data to one kind)")
    records = [{**_trainable(ex), "id": ex.id, "score": float(row[c])} for ex, c in zip(chosen, picks, strict=True)]
    return ReplaySet(records, int(len(pool)), len(probe.ids), n_heldout, method, strategy, chosen)


def add_kl_targets(replay: ReplaySet, model_name: str, *, k: int = 256, max_length: int = 1024,
                   device: str | None = None) -> None:
    """Compute the base model's top-k targets of every chosen example (fp32) and give each record the token
    ids they are aligned with (`input_ids`, `completion_mask` = the trained positions)."""
    from lmforget.encoding import encode_upstream
    from lmforget.models import load_model
    from lmforget.replay.kl import base_targets

    model, tokenizer = load_model(model_name, device=device, dtype="float32", seed=0)
    replay.targets = base_targets(model, tokenizer, replay.examples, k=k, max_length=max_length)
    for rec, ex in zip(replay.records, replay.examples, strict=True):
        enc = encode_upstream(tokenizer, ex, max_length)
        rec.update(input_ids=list(enc.input_ids), completion_mask=[int(m) for m in enc.loss_mask])
    replay.targets_meta = {"model": model_name, "k": k, "max_length": max_length}


def _shape(ex) -> str:
    return "chats" if ex.is_chat else "token ids" if ex.input_ids is not None else "raw texts"


def _trainable(ex) -> dict:
    """The fields a trainer needs to train on exactly what was scored.

    Self-sampled examples keep their token ids (a decode/re-encode round trip changes them) with
    `completion_mask` marking the continuation, the only part trained (TRL reads both; lmforget's
    records format reads `input_ids` + `prompt_len`); `text` is there for reading."""
    if ex.input_ids is not None:
        n = len(ex.input_ids)
        return {"input_ids": list(ex.input_ids), "prompt_len": ex.prompt_len,
                "completion_mask": [0] * ex.prompt_len + [1] * (n - ex.prompt_len), "text": ex.text}
    if ex.text is not None:
        return {"text": ex.text}
    return {"messages": [m.as_dict() for m in ex.messages]}


def check_output(out: str | Path) -> Path:
    out = Path(out)
    if out.suffix != ".jsonl":
        raise LmforgetError(f"{out}: the replay set is JSON lines; name it *.jsonl")
    return out


def write_replay_set(replay: ReplaySet, out: str | Path) -> Path:
    """The JSONL, and with KL targets also NAME.kl.safetensors (`lmforget.replay.kl.write_targets`)."""
    from lmforget.atomic import write_jsonl

    out = check_output(out)
    if replay.targets is not None:
        from lmforget.replay.kl import write_targets
        from lmforget.replay.trainer import targets_path

        write_targets(targets_path(out), [r["id"] for r in replay.records], replay.targets, replay.targets_meta)
    write_jsonl(out, replay.records)
    return out
