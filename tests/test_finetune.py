"""Fine-tuning: the training labels are the answer (and the end of turn that closes it) and nothing of the
prompt or padding; the loss is the scorer's NLL on the same positions; LoRA trains and merges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmforget.config import FinetuneConfig
from lmforget.data.types import TaskExample, TaskSet, UpstreamExample
from lmforget.finetune import _collate, build_train_set, train
from lmforget.models import load_model
from lmforget.replay.mixture import ReplayMixture

ANSWERS = ["Paris.", "Blue, like the sea.", "It is 42 (forty-two)!"]


def _task() -> TaskSet:
    train = [TaskExample.from_prompt(f"Question {i}: what is it?", a) for i, a in enumerate(ANSWERS)]
    return TaskSet("toy", "test", train, [])


def _cfg(**kw) -> FinetuneConfig:
    base = dict(lr=1e-2, steps=3, warmup_steps=0, effective_batch=3, batch_size=3, max_length=128,
                optimizer="adamw_torch", bf16=False)
    return FinetuneConfig(**{**base, **kw})


def test_labels_are_the_answer_tokens_only(tiny_tokenizer) -> None:
    replay = [UpstreamExample("u", text="The river flows into the sea.")]
    mixture = ReplayMixture.build(tiny_tokenizer, _task(), _cfg(), replay)
    batch = _collate(tiny_tokenizer)([mixture[i] for i in range(len(mixture))])
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert ids.shape == labels.shape == mask.shape and len(mixture) == 4
    eos = tiny_tokenizer.eos_token_id
    for row, answer in enumerate(ANSWERS):
        kept = labels[row][labels[row] != -100]
        assert torch.equal(kept, ids[row][labels[row] != -100])  # a label is the token at its position
        assert kept[-1] == eos and tiny_tokenizer.decode(kept[:-1].tolist()).strip() == answer  # answer + end
        assert (labels[row][: int(torch.nonzero(labels[row] != -100)[0])] == -100).all()  # no prompt token
    text = labels[3][mask[3] == 1]  # raw replayed text: every token but the first
    assert text[0] == -100 and (text[1:] != -100).all()
    assert (labels[mask == 0] == -100).all()  # padding is never a label


def test_training_loss_is_the_scored_nll(tiny_llama) -> None:
    """On replayed raw text (trained positions = scored positions) the loss fine-tuning minimises is
    exactly the NLL scoring measures; on a chat it adds the end-of-turn token to the answer's NLL."""
    from lmforget.scoring import make_scorer

    model, tok = tiny_llama
    text = UpstreamExample("t", text="The river flows through the city and into the sea.")
    chat = UpstreamExample("c", messages=_task().train[1].messages)
    mixture = ReplayMixture.build(tok, TaskSet("one", "g", list(_task().train[1:2]), []), _cfg(), [text])
    items = mixture.task_items + mixture.replay_items
    losses, logits = [], []
    for i in range(len(mixture)):
        with torch.no_grad():
            out = model(**_collate(tok)([mixture[i]]))
        losses.append(float(out.loss))
        logits.append(out.logits[0])
    chat_scored, text_scored = make_scorer("hf", model, tok).score([chat, text])
    assert losses[1] == pytest.approx(text_scored.nll, rel=1e-5)
    # the chat's loss: the scored answer tokens and the end-of-turn token after them
    last = max(i for i, t in enumerate(items[0].loss_mask) if t)
    eos_nll = -float(torch.log_softmax(logits[0][last - 1].double(), -1)[items[0].input_ids[last]])
    n = chat_scored.n_tokens
    assert sum(items[0].loss_mask) == n + 1
    assert losses[0] == pytest.approx((chat_scored.nll * n + eos_nll) / (n + 1), rel=1e-5)


def test_lora_trains_low_rank_updates_and_merges() -> None:
    from lmforget.scoring import make_scorer

    base, tok = load_model("tiny:llama", device="cpu", dtype="float32", seed=0)
    before = {k: v.detach().clone() for k, v in base.state_dict().items()}
    probe = [UpstreamExample("x", messages=ex.messages) for ex in _task().train]
    nll_before = [r.nll for r in make_scorer("hf", base, tok).score(probe)]
    cfg = _cfg(method="lora", lr=5e-2, steps=4, max_epochs=10)
    result = train(base, tok, build_train_set(tok, _task(), cfg), cfg, progress=False)
    merged = result.model
    assert result.steps == 4 and np.isfinite(result.train_loss)
    assert not hasattr(merged, "peft_config") and type(merged).__name__ == "LlamaForCausalLM"  # merged back
    after = merged.state_dict()
    assert set(after) == set(before)  # no adapter weights left over
    q = "model.layers.0.self_attn.q_proj.weight"
    delta = (after[q] - before[q]).numpy()
    assert np.abs(delta).max() > 1e-4  # the adapted layer changed ...
    assert np.linalg.matrix_rank(delta, tol=1e-6) <= cfg.lora.r  # ... by a low-rank update
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])  # not adapted
    nll_after = [r.nll for r in make_scorer("hf", merged, tok).score(probe)]
    assert np.isfinite(nll_after).all() and np.mean(nll_after) < np.mean(nll_before)  # it learned the task
