"""The README walk-through, on tiny models: "I fine-tuned my model on my task: what did it forget, and
how do I prevent it?" -> `lmforget probe`, `lmforget forecast`, `lmforget replay-set`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmforget.cli import main
from lmforget.probe import Probe, read_probe, write_probe

MATRIX_TASKS = "tasks.tiny.tasks=[add_numbers,compare_numbers,plural_nouns]"
MY_TASK = "opposites"  # not a row of the matrix: the user's new task


def _finetune_my_model(out: Path) -> None:
    """What the user did before the walk-through: fine-tune the base model on their task and save it."""
    from lmforget.config import load_recipe
    from lmforget.data import load_tasks
    from lmforget.finetune import build_train_set, train
    from lmforget.models import load_model

    recipe = load_recipe("tiny")
    task = next(t for t in load_tasks(list(recipe.tasks.values())) if t.name == MY_TASK)
    model, tok = load_model("tiny:llama", device="cpu", dtype="float32", seed=0)
    result = train(model, tok, build_train_set(tok, task, recipe.finetune), recipe.finetune, max_steps=6,
                   progress=False)
    result.model.save_pretrained(out)
    tok.save_pretrained(out)


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("walk")
    assert main(["collect", "tiny", "-o", str(root / "run"), "-q", MATRIX_TASKS]) == 0
    _finetune_my_model(root / "my-model")
    return root


def test_probe_forecast_replay_set(walk: Path, capsys) -> None:
    run, matrix, upstream = walk / "run", walk / "run" / "matrix.npz", walk / "run" / "data" / "upstream.jsonl"
    probe, forecast, replay = walk / "probe.csv", walk / "forecast.csv", walk / "replay.jsonl"
    capsys.readouterr()

    # 1. what did my fine-tuning make the model forget, on 12 upstream examples?
    assert main(["probe", "--base", "tiny:llama", "--model", str(walk / "my-model"), "--upstream", str(upstream),
                 "--matrix", str(matrix), "-k", "12", "--seed", "0", "-o", str(probe), "-q", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 12 and summary["dropped_undefined"] == 0
    measured = read_probe(probe)
    assert len(set(measured.ids)) == 12 and np.abs(measured.forgetting).max() > 0
    # the probe measures what collect measures: base NLL from the run, fine-tuned NLL from `lmforget score`
    base = pd.read_parquet(run / "base.parquet").set_index("id")["nll"]
    assert main(["score", "--model", str(walk / "my-model"), "--data", str(upstream), "-o",
                 str(walk / "after.csv"), "--max-length", "128", "-q"]) == 0
    after = pd.read_csv(walk / "after.csv", dtype={"id": str}).set_index("id")["nll"]
    expected = (after - base)[measured.ids].to_numpy()
    np.testing.assert_allclose(measured.forgetting, expected, atol=1e-5)
    # seeded: the same seed draws the same examples, another seed others
    assert main(["probe", "--base", "tiny:llama", "--model", str(walk / "my-model"), "--upstream",
                 str(upstream), "-k", "12", "--seed", "1", "-o", str(walk / "probe1.csv"), "-q"]) == 0
    assert read_probe(walk / "probe1.csv").ids != measured.ids

    # 2. predict the forgetting of every upstream example
    assert main(["forecast", str(matrix), "--probe", str(probe), "-o", str(forecast)]) == 0
    with open(forecast, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 48
    observed = {r["id"]: float(r["forgetting"]) for r in rows if r["observed"] == "1"}
    assert observed.keys() == set(measured.ids)
    np.testing.assert_allclose([observed[i] for i in measured.ids], measured.forgetting, rtol=0, atol=1e-12)

    # 3. what should I replay?
    assert main(["replay-set", str(matrix), "--probe", str(probe), "--upstream", str(upstream), "--budget", "8",
                 "-o", str(replay), "--json"]) == 0
    chosen = [json.loads(line) for line in replay.read_text().splitlines()]
    assert len(chosen) == 8 and all({"text", "id", "score"} <= set(r) for r in chosen)
    assert len({r["id"] for r in chosen}) == 8
    predicted = {r["id"]: float(r["forgetting"]) for r in rows}  # replay-set ranks the row forecast wrote
    np.testing.assert_allclose([r["score"] for r in chosen], [predicted[r["id"]] for r in chosen], atol=1e-9)


def test_probe_file_round_trip_and_bad_files(tmp_path: Path) -> None:
    from lmforget.errors import LmforgetError

    p = Probe(["a", "b,c", "d"], np.array([0.25, -1e-9, 3.0]), extra={"n_tokens": np.array([3, 4, 5])})
    write_probe(p, tmp_path / "p.csv")
    back = read_probe(tmp_path / "p.csv")
    assert back.ids == p.ids and np.array_equal(back.forgetting, p.forgetting)
    np.testing.assert_array_equal(back.row(["x", "d", "a", "b,c"]), [np.nan, 3.0, 0.25, -1e-9])
    for text, match in [("id,score\na,1\n", "needs the columns id,forgetting"),
                        ("id,forgetting\na,1\na,2\n", "appears twice"),
                        ("id,forgetting\na,nan\n", "finite"), ("id,forgetting\na,x\n", "not a number"),
                        ("id,forgetting\n", "no probe rows")]:
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(LmforgetError, match=match):
            read_probe(tmp_path / "bad.csv")
    with pytest.raises(LmforgetError, match="'zz' is not an upstream example"):
        Probe(["zz"], np.array([1.0])).row(["a"])


def test_probe_bad_input_leaves_no_file(walk: Path, tmp_path: Path, capsys) -> None:
    upstream = walk / "run" / "data" / "upstream.jsonl"
    out = tmp_path / "probe.csv"
    base = ["probe", "--base", "tiny:llama", "--upstream", str(upstream), "-o", str(out), "-q"]
    for args, match in [(["--model", str(tmp_path / "nowhere"), "-k", "3"], "nowhere"),
                        (["--model", str(walk / "my-model"), "-k", "49"], "-k 49 is larger"),
                        (["--model", str(walk / "my-model"), "-k", "0"], "at least 1")]:
        capsys.readouterr()
        assert main(base + args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
        assert not out.exists()


def _replay_kl(kl_replay, model) -> float:
    """Mean KL to the base model over every example of a KL replay set, under `model`."""
    import torch

    from lmforget.replay.kl import batch_kl

    model.eval()
    with torch.no_grad():
        batch = kl_replay.batch(list(range(len(kl_replay))))
        return float(batch_kl(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                              batch).mean())


def _kl_replay_set(walk: Path, out: Path) -> Path:
    """README "Replay with KL to the base model", step 1: probe, then `lmforget replay-set --objective kl`
    (its --json summary goes to stdout)."""
    matrix, upstream = walk / "run" / "matrix.npz", walk / "run" / "data" / "upstream.jsonl"
    assert main(["probe", "--base", "tiny:llama", "--model", str(walk / "my-model"), "--upstream", str(upstream),
                 "-k", "12", "--seed", "0", "-o", str(out / "probe.csv"), "-q"]) == 0
    assert main(["replay-set", str(matrix), "--probe", str(out / "probe.csv"), "--upstream", str(upstream),
                 "--budget", "6", "-o", str(out / "r.jsonl"), "--objective", "kl", "--model", "tiny:llama",
                 "--top-k", "16", "--json"]) == 0
    return out / "r.jsonl"


def test_kl_replay_set_in_your_own_trainer(walk: Path, tmp_path: Path, capsys) -> None:
    """README "Replay with KL to the base model": replay-set --objective kl, then KLReplayTrainer."""
    import copy

    from safetensors import safe_open
    from transformers import Trainer, TrainingArguments

    from lmforget.config import load_recipe
    from lmforget.data import load_tasks
    from lmforget.finetune import EncodedDataset, _collate, build_train_set
    from lmforget.models import load_model
    from lmforget.replay.trainer import KLReplayTrainer, load_kl_replay

    capsys.readouterr()
    replay = _kl_replay_set(walk, tmp_path)
    assert json.loads(capsys.readouterr().out)["kl_targets"] == str(tmp_path / "r.kl.safetensors")
    records = [json.loads(line) for line in replay.read_text().splitlines()]
    with safe_open(str(tmp_path / "r.kl.safetensors"), framework="pt") as fh:
        meta, offsets = fh.metadata(), fh.get_tensor("offsets")
        n = int(offsets[-1])
        assert fh.get_tensor("ids").shape == (n, 16) and fh.get_tensor("rest").shape == (n,)
    assert meta["format"] == "lmforget-kl-topk/1" and meta["records"].split("\n") == [r["id"] for r in records]
    assert np.diff(offsets.numpy()).tolist() == [sum(r["completion_mask"]) for r in records]
    kl_replay = load_kl_replay(replay)

    recipe = load_recipe("tiny")
    task = next(t for t in load_tasks(list(recipe.tasks.values())) if t.name == MY_TASK)
    base, tok = load_model("tiny:llama", device="cpu", dtype="float32", seed=0)
    data = EncodedDataset(build_train_set(tok, task, recipe.finetune))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=8, per_device_train_batch_size=2,
                             learning_rate=3e-3, report_to="none", use_cpu=True, save_strategy="no", seed=0,
                             remove_unused_columns=False, disable_tqdm=True)

    plain = Trainer(model=copy.deepcopy(base), args=args, train_dataset=data, data_collator=_collate(tok))
    plain.train()
    with_kl = KLReplayTrainer(model=copy.deepcopy(base), args=args, train_dataset=data, data_collator=_collate(tok),
                              kl_replay=kl_replay, kl_weight=4.0, kl_batch_size=1)
    with_kl.train()
    assert with_kl.kl_values[0] == 0.0 and len(with_kl.kl_values) == 8  # at the base weights: exactly zero
    assert _replay_kl(kl_replay, base) < 1e-6  # padded batches: zero up to rounding
    assert 0 < _replay_kl(kl_replay, with_kl.model) < 0.5 * _replay_kl(kl_replay, plain.model)


def test_kl_replay_in_trl_sft_trainer(walk: Path, tmp_path: Path) -> None:
    """README: `class SFTWithKLReplay(KLReplayMixin, SFTTrainer)` on TRL's own chat data path: SFTTrainer
    tokenizes the task's conversations and computes its loss and metrics; the mix-in adds the KL term."""
    pytest.importorskip("trl")
    import copy

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from lmforget.config import load_recipe
    from lmforget.data import load_tasks
    from lmforget.models import load_model
    from lmforget.replay.trainer import KLReplayMixin, load_kl_replay

    class SFTWithKLReplay(KLReplayMixin, SFTTrainer):
        pass

    kl_replay = load_kl_replay(_kl_replay_set(walk, tmp_path))
    recipe = load_recipe("tiny")
    task = next(t for t in load_tasks(list(recipe.tasks.values())) if t.name == MY_TASK)
    chats = Dataset.from_list([{"messages": [{"role": m.role, "content": m.content} for m in ex.messages]}
                               for ex in task.train])
    base, tok = load_model("tiny:llama", device="cpu", dtype="float32", seed=0)
    args = SFTConfig(output_dir=str(tmp_path / "out"), max_steps=8, per_device_train_batch_size=2,
                     learning_rate=3e-3, report_to="none", use_cpu=True, save_strategy="no", seed=0,
                     disable_tqdm=True, max_length=64, logging_steps=1,
                     bf16=False)  # SFTConfig's default is bf16 autocast: the targets here are fp32

    plain = SFTTrainer(model=copy.deepcopy(base), args=args, train_dataset=chats, processing_class=tok)
    plain.train()
    with_kl = SFTWithKLReplay(model=copy.deepcopy(base), args=args, train_dataset=chats, processing_class=tok,
                              kl_replay=kl_replay, kl_weight=4.0)
    with_kl.train()
    assert with_kl.kl_values[0] == 0.0 and len(with_kl.kl_values) == 8
    # SFTTrainer's own compute_loss ran under the mix-in: its token accuracy is logged every step
    assert sum("mean_token_accuracy" in e for e in with_kl.state.log_history) == 8
    assert 0 < _replay_kl(kl_replay, with_kl.model) < 0.75 * _replay_kl(kl_replay, plain.model)  # measured: 0.55x


def test_wise_ft_of_a_model_fine_tuned_elsewhere_and_of_a_lora_adapter(walk: Path, tmp_path: Path, capsys) -> None:
    """`lmforget wise-ft`: base + alpha (fine-tuned - base), written as a model directory every loader reads."""
    import torch

    from lmforget.config import load_recipe
    from lmforget.models import load_model

    base, _ = load_model("tiny:llama", device="cpu", dtype="float32", seed=0)
    tuned, _ = load_model(str(walk / "my-model"), device="cpu", dtype="float32")
    theta0, theta1 = base.state_dict(), tuned.state_dict()
    capsys.readouterr()
    for alpha in (0.0, 0.5):
        out = tmp_path / f"wise-{alpha}"
        assert main(["wise-ft", "--base", "tiny:llama", "--model", str(walk / "my-model"), "--alpha", str(alpha),
                     "-o", str(out), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["alpha"] == alpha and summary["changed_tensors"] > 0
        assert (out / "model.safetensors").is_file() and (out / "lmforget_wise_ft.json").is_file()
        assert len({f.stat().st_mode for f in out.iterdir()}) == 1  # the weights too get the usual permissions
        mixed, _ = load_model(str(out), device="cpu", dtype="float32")
        for name, w in mixed.state_dict().items():
            torch.testing.assert_close(w, torch.lerp(theta0[name], theta1[name], alpha), rtol=0, atol=0)
    # the interpolated model is a model like any other: probe what it forgot
    upstream = walk / "run" / "data" / "upstream.jsonl"
    assert main(["probe", "--base", "tiny:llama", "--model", str(tmp_path / "wise-0.5"), "--upstream", str(upstream),
                 "-k", "6", "-o", str(tmp_path / "p.csv"), "-q"]) == 0
    assert len(read_probe(tmp_path / "p.csv").ids) == 6

    # a LoRA adapter is merged into the base first: half its update at alpha 0.5
    from lmforget.finetune import wrap_lora

    cfg = load_recipe("tiny").finetune.model_copy(update={"method": "lora"})
    lora = wrap_lora(load_model("tiny:llama", device="cpu", dtype="float32", seed=0)[0], cfg)
    with torch.no_grad():  # as if trained: peft starts lora_B at zero, an update of nothing
        generator = torch.Generator().manual_seed(0)
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=generator))
    lora.save_pretrained(tmp_path / "adapter")
    merged = lora.merge_and_unload().state_dict()
    assert main(["wise-ft", "--base", "tiny:llama", "--model", str(tmp_path / "adapter"), "--alpha", "0.5",
                 "-o", str(tmp_path / "wise-lora")]) == 0
    capsys.readouterr()
    half, _ = load_model(str(tmp_path / "wise-lora"), device="cpu", dtype="float32")
    moved = 0
    for name, w in half.state_dict().items():
        torch.testing.assert_close(w, torch.lerp(theta0[name], merged[name], 0.5), rtol=0, atol=0)
        moved += not torch.equal(theta0[name], merged[name])
    assert moved > 0

    # bad input: one line, exit 2, no directory left behind
    for args, message in ((["--alpha", "1.5", "-o", str(tmp_path / "bad")], "alpha must be in [0, 1]"),
                          (["--alpha", "0.5", "-o", str(tmp_path / "wise-0.5")], "exists; choose a new directory")):
        assert main(["wise-ft", "--base", "tiny:llama", "--model", str(walk / "my-model"), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".*tmp-*"))
