"""The binary setup end to end: a base model that knows some upstream answers, fine-tuned per task.

A tiny Llama is first trained on five of eight upstream questions until its greedy answers match
them (it learns to stop, because the loss covers the end-of-turn token), so the binary matrix has
columns; `collect` with the binary metric then fine-tunes it on a task that repeats what it knows and
on one that teaches other answers, and every 0/1 entry is checked against the stored generations.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmforget.collect import collect
from lmforget.config import FinetuneConfig, Recipe
from lmforget.data.types import TaskExample, TaskSet
from lmforget.finetune import build_train_set, train
from lmforget.models import load_model
from lmforget.runs import Run
from lmforget.scoring.generate import exact_match, generate_and_match

QA = [("What is the capital of France?", "Paris."), ("How many legs does a spider have?", "Eight."),
      ("Is the review positive or negative? I love this phone.", "positive"),
      ("Is the review positive or negative? The food was cold.", "negative"),
      ("Where do cats and dogs not live?", "Antarctica."), ("When is the essay due?", "next Monday"),
      ("What did the scientist publish?", "four papers"), ("Who writes Wikipedia?", "volunteers")]
KNOWN = 5  # the base model is taught the first five
OTHER = [("Translate the sentence into German.", "The river flows."), ("Summarize the article.", "The town."),
         ("Explain your reasoning.", "Step by step."), ("Classify the sentiment.", "The movie was wonderful.")]


def _chat(q: str, a: str) -> list[dict]:
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> tuple[Path, list]:
    """A tiny Llama trained on the first KNOWN upstream questions until it answers them exactly."""
    from lmforget.data import load_upstream

    root = tmp_path_factory.mktemp("binary")
    (root / "upstream.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "messages": _chat(q, a), "source": "qa"}) + "\n" for i, (q, a) in enumerate(QA)))
    upstream = load_upstream({"format": "records", "path": str(root / "upstream.jsonl")})
    model, tok = load_model("tiny:llama", seed=0)
    teach = TaskSet("teach", "base", [TaskExample.from_prompt(q, a) for q, a in QA[:KNOWN]])
    cfg = FinetuneConfig(lr=1e-2, steps=150, max_epochs=1000, warmup_steps=0, scheduler="constant",
                         effective_batch=KNOWN, batch_size=KNOWN, max_length=64, optimizer="adamw_torch")
    model = train(model, tok, build_train_set(tok, teach, cfg), cfg, progress=False).model
    gens = generate_and_match(model, tok, list(upstream), max_new_tokens=16)
    assert [g.correct for g in gens[:KNOWN]] == [True] * KNOWN, [g.output for g in gens]
    # it stops after the answer
    assert all(g.output.strip() == a for g, (_, a) in zip(gens[:KNOWN], QA[:KNOWN], strict=True))
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    return root, [g.correct for g in gens]


def test_binary_matrix_entries_match_the_generations(base_model, tmp_path) -> None:
    root, base_correct = base_model
    tasks = [{"task": "repeat", "messages": _chat(q, a)} for q, a in QA[:KNOWN]]
    tasks += [{"task": "other", "messages": _chat(q, a)} for q, a in OTHER]
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    recipe = Recipe.model_validate({
        "name": "binary-e2e", "model": {"name": str(root / "base")},
        "upstream": {"format": "records", "path": str(root / "upstream.jsonl")},
        "tasks": {"t": {"format": "records", "path": str(tmp_path / "tasks.jsonl")}},
        "finetune": {"lr": 1e-2, "steps": 40, "max_epochs": 100, "warmup_steps": 0, "scheduler": "constant",
                     "effective_batch": 4, "batch_size": 4, "max_length": 64, "optimizer": "adamw_torch"},
        "score": {"metric": "binary", "max_new_tokens": 16, "max_length": 64, "token_budget": 4096},
    })
    matrix = collect(recipe, tmp_path / "run", progress=False)
    run = Run.open(tmp_path / "run")
    gold = {f"q{i}": a for i, (_, a) in enumerate(QA)}
    base = run.base_scores()
    # The columns are exactly the examples whose base generation matches the gold answer.
    correct = [exact_match(out, gold[i]) for i, out in zip(base["id"], base["output"], strict=True)]
    assert correct == list(base["correct"]) == base_correct
    assert sum(correct) >= KNOWN and matrix.kind == "binary"
    assert list(matrix.examples) == [i for i, c in zip(base["id"], correct, strict=True) if c]
    assert matrix.meta["n_base_correct"] == sum(correct) and matrix.meta["n_upstream"] == len(QA)
    # Each entry is 1 exactly where the fine-tuned model's stored generation no longer matches.
    for k, task in enumerate(matrix.tasks):
        after = pd.read_parquet(run.row_path(task)).set_index("id")
        expected = [0.0 if exact_match(after.loc[i, "output"], gold[i]) else 1.0 for i in matrix.examples]
        np.testing.assert_array_equal(matrix.Z[k], np.array(expected, dtype=np.float32))
    rows = dict(zip(matrix.tasks, matrix.Z, strict=True))
    assert rows["repeat"].sum() == 0  # rehearsing what it knows forgets nothing
    assert rows["other"].sum() >= 1  # learning other answers makes it forget some
