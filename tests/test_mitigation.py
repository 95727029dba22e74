"""Mitigation arms as features: KL replay, L2-SP, LoRA and WiSE-FT arms, and task gain, on tiny models."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lmforget.cli import main
from lmforget.errors import LmforgetError
from lmforget.replay.kl import base_targets, batch_kl, collate_with_targets, topk_kl, topk_targets


def _exact_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    logp, logq = torch.log_softmax(p_logits, -1), torch.log_softmax(q_logits, -1)
    return (logp.exp() * (logp - logq)).sum(-1)


def test_topk_kl_is_exact_at_full_vocab_a_lower_bound_below_and_its_gradient_is_right() -> None:
    gen = torch.Generator().manual_seed(0)
    p, q = (torch.randn(5, 40, generator=gen, dtype=torch.float64) for _ in range(2))
    exact = _exact_kl(p, q)
    full = topk_targets(p, 40)
    assert torch.isneginf(full.rest).all()
    torch.testing.assert_close(topk_kl(q, full.ids, full.logp, full.rest), exact, rtol=1e-12, atol=1e-12)
    for k in (1, 4, 16):
        t = topk_targets(p, k)
        assert t.ids.shape == (5, k)
        assert (topk_kl(q, t.ids, t.logp, t.rest) <= exact + 1e-12).all()  # coarsening never adds divergence
        z = q.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x, t=t: topk_kl(x, t.ids, t.logp, t.rest), (z,))
    z = q.clone().requires_grad_(True)
    topk_kl(z, full.ids, full.logp, full.rest).sum().backward()
    torch.testing.assert_close(z.grad, torch.softmax(q, -1) - torch.softmax(p, -1))  # exact KL: q - p


@pytest.mark.parametrize("k", [8, None])
def test_kl_term_is_exactly_zero_with_zero_gradient_at_the_base_weights(load_tiny, k) -> None:
    from lmforget.data.types import UpstreamExample
    from lmforget.encoding import encode_upstream
    from lmforget.finetune import _collate

    base, tok = load_tiny("llama")
    model = copy.deepcopy(base)
    k = k or model.config.vocab_size  # None: the exact distribution
    ex = UpstreamExample("u", text="Water boils at a lower temperature on a mountain top.")
    targets = base_targets(model, tok, [ex], k=k, max_length=64)
    enc = encode_upstream(tok, ex, 64)
    item = {"input_ids": enc.input_ids, "attention_mask": [1] * len(enc.input_ids), "labels": enc.labels(),
            "kl": targets["u"]}
    batch = collate_with_targets(_collate(tok))([item])
    assert len(batch["kl_rows"]) == enc.n_trained
    model.train()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    kl = batch_kl(logits, batch)
    assert kl.shape == (enc.n_trained,) and torch.equal(kl, torch.zeros_like(kl))
    kl.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.equal(g, torch.zeros_like(g)) for g in grads)
    # after one step away from the base weights the term is positive and pulls back
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    moved = batch_kl(model(input_ids=batch["input_ids"]).logits, batch)
    assert (moved > 0).all()


def test_truncation_error_is_zero_at_full_vocabulary_and_a_lower_bound_below(load_tiny) -> None:
    """What the benchmark behind the documented truncation table measures: exact at k = vocab, below the
    exact KL (a lower bound) and further from it as k shrinks, with the gradient's direction kept."""
    from lmforget.data.types import UpstreamExample
    from lmforget.replay.kl import truncation_error

    base, tok = load_tiny("llama")
    other = copy.deepcopy(base)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    examples = [UpstreamExample(f"u{i}", text=t) for i, t in
                enumerate(["Water boils at a lower temperature on a mountain top.",
                           "The river runs north through three towns before it reaches the sea."])]
    vocab = base.config.vocab_size
    out = truncation_error(base, other, tok, examples, [4, 64, vocab], max_length=64)
    assert out["positions"] > 10 and out["exact_mean_kl"] > 0
    full, mid, low = (out["top_k"][k] for k in (vocab, 64, 4))
    assert abs(full["relative_error"]) < 1e-9 and full["gradient_cosine"] == pytest.approx(1.0, abs=1e-9)
    assert low["relative_error"] < mid["relative_error"] < 0  # a lower bound, looser with fewer kept
    assert low["gradient_cosine"] < mid["gradient_cosine"] <= 1 + 1e-12


def test_kl_targets_file_gets_the_usual_permissions(tmp_path: Path) -> None:
    """safetensors writes its files 0600; the atomic write gives the targets the JSONL's mode (0666 - umask)."""
    import os
    import stat

    from lmforget.atomic import write_jsonl
    from lmforget.replay.kl import read_targets, write_targets

    targets = {"a": topk_targets(torch.randn(3, 40, generator=torch.Generator().manual_seed(0)), 4)}
    out = write_targets(tmp_path / "r.kl.safetensors", ["a"], targets, {"model": "m", "k": 4})
    write_jsonl(tmp_path / "r.jsonl", [{"id": "a"}])
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "r.jsonl").stat().st_mode) == 0o666 & ~umask
    ids, read, _ = read_targets(out)
    assert ids == ["a"] and torch.equal(read["a"].ids, targets["a"].ids)


def test_kl_weight_scales_the_kl_term_and_leaves_the_task_loss_alone(load_tiny) -> None:
    from lmforget.data.types import UpstreamExample
    from lmforget.encoding import encode_upstream
    from lmforget.finetune import _collate
    from lmforget.replay.online import MixtureTrainer

    base, tok = load_tiny("llama")
    model = copy.deepcopy(base)
    ex = UpstreamExample("u", text="Water boils at a lower temperature on a mountain top.")
    targets = base_targets(model, tok, [ex], k=8, max_length=64)
    enc = encode_upstream(tok, ex, 64)
    replay = {"input_ids": enc.input_ids, "attention_mask": [1] * len(enc.input_ids), "labels": enc.labels(),
              "kl": targets["u"]}
    ids = tok("The opposite of hot is cold")["input_ids"]
    task = {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * 5 + ids[5:]}
    batch = collate_with_targets(_collate(tok))([task, replay])
    with torch.no_grad():
        for p in model.parameters():  # away from the base weights, so the KL term is positive
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))

    def loss(weighting: str, w: float) -> float:
        trainer = object.__new__(MixtureTrainer.weighted(weighting, "kl", w))  # compute_loss needs no state
        with torch.no_grad():
            return float(trainer.compute_loss(model, batch))

    for weighting in ("example", "token"):
        one, two, three = (loss(weighting, w) for w in (1, 2, 3))
        assert two > one  # a positive KL term counts more
        assert three - one == pytest.approx(2 * (two - one), rel=1e-5)  # linear in the weight: the task part stays
    with pytest.raises(LmforgetError, match="KL weight"):
        MixtureTrainer.weighted("example", "kl", 0)


def test_method_names() -> None:
    from lmforget.replay.methods import parse_method, parse_methods

    m = parse_method("kl-oracle:top")
    assert (m.source, m.strategy, m.objective, m.trained_as) == ("oracle", "top", "kl", "kl-oracle:top")
    assert parse_method("random").objective == "nll"
    assert parse_method("random", default_objective="kl").objective == "kl"
    assert parse_method("nll-random", default_objective="kl").objective == "nll"
    assert parse_method("kl-online-mf").completer == "mf" and parse_method("kl-replay-only").source == "replay-only"
    assert parse_method("lora").lora_rank == 16 and parse_method("lora@4").lora_rank == 4
    assert parse_method("l2-sp@0.01").l2sp == 0.01 and parse_method("l2-sp@0.01").source == "none"
    w = parse_method("kl-random+wise-ft@0.25")
    assert (w.wise_ft, w.trained_as, w.training().name, w.training().wise_ft) == (0.25, "kl-random", "kl-random", None)
    assert parse_method("wise-ft").wise_ft == 0.5 and parse_method("wise-ft").trained_as == "none"
    assert parse_method("random+lora@8+wise-ft@1").trained_as == "random+lora@8"
    k = parse_method("kl-oracle+kl-weight@3+wise-ft@0.5")
    assert (k.kl_weight, k.objective, k.trained_as, k.training().kl_weight) == (3.0, "kl", "kl-oracle+kl-weight@3", 3.0)
    assert parse_method("kl-random").kl_weight is None  # the recipe's replay.kl_weight
    assert parse_method("random+kl-weight@2", default_objective="kl").kl_weight == 2.0
    for bad, match in [("kl-none", "no objective"), ("l2-sp", "needs its lambda"), ("l2-sp@x", "not a number"),
                       ("wise-ft@2", r"in \[0, 1\]"), ("wise-ft+lora", "comes last"), ("lora+l2-sp@1", "not to LoRA"),
                       ("random+random", "is not l2-sp"), ("lora+lora", "given twice"), ("kl-nothing", "unknown"),
                       ("random+", "empty part"), ("random+kl-weight@2", "KL objective"),
                       ("kl-weight@2", "KL objective"), ("kl-random+kl-weight", "needs its weight"),
                       ("kl-random+kl-weight@0", "must be > 0")]:
        with pytest.raises(LmforgetError, match=match):
            parse_method(bad)
    assert [m.name for m in parse_methods("none,kl-random,wise-ft@0.5")] == ["none", "kl-random", "wise-ft@0.5"]


def test_wise_ft_endpoints_are_exact_and_l2sp_holds_weights_near_the_start(load_tiny) -> None:
    from lmforget.config import load_recipe
    from lmforget.data import load_tasks
    from lmforget.finetune import build_train_set, train
    from lmforget.weightspace import interpolate, snapshot

    recipe = load_recipe("tiny")
    task = next(t for t in load_tasks(list(recipe.tasks.values())) if t.name == "opposites")
    base, tok = load_tiny("llama")
    theta0 = snapshot(base)
    moved = {}
    for lam in (0.0, 1e4):
        cfg = recipe.finetune.model_copy(update={"l2sp": lam, "lr": 1e-2})
        items = build_train_set(tok, task, cfg)
        model = train(copy.deepcopy(base), tok, items, cfg, max_steps=10, progress=False).model
        moved[lam] = sum(float(((v - theta0[k]) ** 2).sum()) for k, v in model.state_dict().items())
    assert moved[1e4] < 0.1 * moved[0.0], moved
    theta1 = snapshot(model)
    for alpha, want in ((0.0, theta0), (1.0, theta1)):
        interpolate(model, theta0, theta1, alpha)
        assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
    interpolate(model, theta0, theta1, 0.5)
    k = next(k for k in theta0 if not torch.equal(theta0[k], theta1[k]))
    torch.testing.assert_close(model.state_dict()[k], (theta0[k] + theta1[k]) / 2)
    cfg = recipe.finetune.model_copy(update={"l2sp": 1.0, "method": "lora"})
    with pytest.raises(LmforgetError, match="l2sp applies to full fine-tuning"):
        train(copy.deepcopy(base), tok, build_train_set(tok, task, cfg), cfg, max_steps=1, progress=False)
    assert "l2sp" not in recipe.finetune.science() and cfg.science()["l2sp"] == 1.0  # fingerprint unchanged at 0


ARMS = "none,random,oracle,kl-random,kl-oracle,l2-sp@1000,lora,wise-ft@0,wise-ft@1,kl-random+wise-ft@0.5"


@pytest.fixture(scope="module")
def arms_study(tmp_path_factory) -> Path:
    from lmforget.collect import collect
    from lmforget.config import load_recipe

    root = tmp_path_factory.mktemp("arms")
    collect(load_recipe("tiny", ["tasks.tiny.n_eval=3"]), root / "run", progress=False)
    assert main(["replay", "replay-tiny", f"replay.run={root / 'run'}", "replay.test_tasks=[add_numbers,opposites]",
                 "-o", str(root / "study"), "--methods", ARMS, "-q"]) == 0
    return root


def test_every_arm_reports_forgetting_and_task_gain(arms_study: Path) -> None:
    from lmforget.workdir import cell_file

    out = arms_study / "study"
    res = json.loads((out / "results.json").read_text())
    cells = {(c["task"], c["method"]): json.loads(cell_file(out, c["task"], c["method"], ".json").read_text())
             for c in res["cells"]}  # the full records, with their replay sets
    for (task, name), c in cells.items():
        assert c["task_eval_n"] >= 2 and math.isfinite(c["task_gain"])
        assert c["task_gain"] == pytest.approx(c["task_nll_before"] - c["task_nll_after"])
        assert "task_em_gain" in c  # the tiny answers are short: exact match measured
        table = pd.read_parquet(cell_file(out, task, name, ".task.parquet"))
        assert len(table) == c["task_eval_n"] and table["nll_before"].tolist() == pytest.approx(
            pd.read_parquet(cell_file(out, task, "none", ".task.parquet"))["nll_before"].tolist())
        # the base model's task scores are computed once per task (with none and its WiSE-FT cells, which run
        # first) and read back by every other arm
        source = c.get("task_before_from")
        if c.get("trained_as", name) == "none":
            assert source is None
        else:
            assert cell_file(out, task, source, ".task.parquet").is_file() and source != name
        # WiSE-FT: alpha 0 is the base model exactly, alpha 1 the arm's own weights exactly
        if name == "wise-ft@0":
            assert c["heldout_mean_increase"] == pytest.approx(0, abs=1e-6) and c["task_gain"] == 0.0
        if name == "wise-ft@1":
            assert c["heldout_mean_increase"] == cells[(task, "none")]["heldout_mean_increase"]
            assert c["task_gain"] == cells[(task, "none")]["task_gain"] and c["trained_as"] == "none"
    assert cells[("add_numbers", "kl-random")]["objective"] == "kl"
    assert cells[("add_numbers", "random")]["objective"] == "nll"
    assert cells[("add_numbers", "kl-random")]["kl_top_k"] == 256
    assert cells[("add_numbers", "kl-random+wise-ft@0.5")]["replay"] == cells[("add_numbers", "kl-random")]["replay"]
    assert cells[("add_numbers", "lora")]["lora_rank"] == 16 and cells[("add_numbers", "l2-sp@1000")]["l2sp"] == 1000
    # KL replay trained on random's (oracle's) very examples, with its steps; only the objective differs
    for t in ("add_numbers", "opposites"):
        for sel in ("random", "oracle"):
            kl, nll = cells[(t, f"kl-{sel}")], cells[(t, sel)]
            assert (kl["replay"], kl["steps"], kl["objective"], nll["objective"]) == (
                nll["replay"], nll["steps"], "kl", "nll")
        assert all(math.isfinite(r["score"]) for r in cells[(t, "kl-oracle")]["replay"])  # the run's true row
    assert any([r["id"] for r in cells[(t, "oracle")]["replay"]] != [r["id"] for r in cells[(t, "random")]["replay"]]
               for t in ("add_numbers", "opposites"))  # targeting chose other examples than the random draw
    gain = res["task_gain"]["methods"]
    assert set(gain) == set(ARMS.split(",")) and "vs_none" in gain["random"] and "t_p_holm" in gain["random"]["vs_none"]
    assert gain["none"]["retained_vs_none"] == pytest.approx(1.0)
    for g in gain.values():  # the per-task median share: what each task's own ratio says
        learned = [t for t in g["per_task"] if gain["none"]["per_task"][t] > 0]
        ratios = [g["per_task"][t] / gain["none"]["per_task"][t] for t in learned]
        assert g["median_task_retained_vs_none"] == (pytest.approx(float(np.median(ratios))) if ratios else None)
    assert "task_em_gain" in res and res["pareto"]["front"] and set(res["pareto"]["front"]) <= set(gain)
    assert "t_p_holm" in res["methods"]["kl-random"]["vs_none"]
    report = (out / "report.md").read_text()
    assert "## Forgetting and learning" in report and "Pareto front" in report and "pareto.png" in report
    assert "Exact match was measured on 2 of the 2 tasks: add_numbers, opposites." in report
    vs = res["methods"]["kl-random"]["vs_none"]  # forgetting against none: the paired tests, in the report too
    row = next(line for line in report.split("### Against no replay")[1].splitlines()
               if line.startswith("| kl-random | "))
    assert row.endswith(f"| {vs['mean_difference']:+.4f} [{vs['ci'][0]:+.4f}, {vs['ci'][1]:+.4f}], "
                        f"{vs['t_p_holm']:.3g}, {vs['wilcoxon_p']:.3g}, {vs['wins']}/2 |")
    em_vs = res["task_em_gain"]["methods"]["random"]["vs_none"]
    em_row = next(line for line in report.split("Exact match was measured")[1].splitlines()
                  if line.startswith("| random | "))
    assert f"| {em_vs['mean_difference']:+.3f} [{em_vs['ci'][0]:+.3f}, {em_vs['ci'][1]:+.3f}], " in em_row
    per_task = report.split("### Per task (answer-NLL gain)")[1].splitlines()
    assert next(line for line in per_task if line.startswith("| opposites | ")) == (
        "| opposites | " + " | ".join(f"{gain[m]['per_task']['opposites']:+.3f}" for m in gain) + " |")
    assert (out / "pareto.png").stat().st_size > 10_000
    manifest = json.loads((out / "manifest.json").read_text())
    # defaults are left out: old studies still resume
    assert "objective" not in manifest["settings"]["replay"] and "kl_weight" not in manifest["settings"]["replay"]


def test_reused_base_task_scores_equal_a_fresh_scoring_and_a_file_that_does_not_fit_is_ignored(
        arms_study: Path, tmp_path: Path) -> None:
    import shutil

    from lmforget.replay.study_setup import load_study_recipe, open_study, prepare_out
    from lmforget.workdir import cell_file

    out = tmp_path / "study"
    args = [f"replay.run={arms_study / 'run'}", "replay.test_tasks=[add_numbers]"]
    prepare_out(open_study(load_study_recipe("replay-tiny", args), out, "random"))  # an empty study
    # a finished cell of the other task, planted in add_numbers' folder: its ids differ, so it must not be used
    for suffix in (".json", ".task.parquet"):
        target = cell_file(out, "add_numbers", "none", suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cell_file(arms_study / "study", "opposites", "none", suffix), target)
    (target.parent / "broken.task.parquet").write_bytes(b"not parquet")  # unreadable: ignored too
    (target.parent / "broken.json").write_text("{}")
    assert main(["replay", "replay-tiny", *args, "-o", str(out), "--methods", "random", "-q"]) == 0
    fresh = json.loads(cell_file(out, "add_numbers", "random", ".json").read_text())
    reused = json.loads(cell_file(arms_study / "study", "add_numbers", "random", ".json").read_text())
    assert "task_before_from" not in fresh and "task_before_from" in reused
    for key in ("task_nll_before", "task_em_before", "task_gain", "task_em_gain", "heldout_mean_increase"):
        assert fresh[key] == reused[key], key  # bit for bit: reading the scores back changes nothing


def test_kl_objective_as_the_recipe_default_and_a_resume_runs_only_new_cells(arms_study: Path, capsys) -> None:
    from lmforget.workdir import cell_file

    out = arms_study / "study"
    stamp = cell_file(out, "opposites", "kl-random", ".json").stat().st_mtime_ns
    args = ["replay", "replay-tiny", f"replay.run={arms_study / 'run'}", "replay.test_tasks=[add_numbers,opposites]",
            "-o", str(out), "-q"]
    # a new post hoc alpha of a finished arm: one unit retrains it, writes only the new cell
    assert main(args + ["--methods", ARMS + ",kl-random+wise-ft@0.25"]) == 0
    assert cell_file(out, "opposites", "kl-random", ".json").stat().st_mtime_ns == stamp
    new = json.loads(cell_file(out, "opposites", "kl-random+wise-ft@0.25", ".json").read_text())
    assert new["wise_ft"] == 0.25 and new["objective"] == "kl"
    first = json.loads(cell_file(out, "opposites", "kl-random", ".json").read_text())
    assert (new["train_loss"], new["replay"]) == (first["train_loss"], first["replay"])  # the same training again
    # a heavier KL term: the same replayed examples and steps, other weights
    assert main(args + ["--methods", "kl-random,kl-random+kl-weight@100"]) == 0
    old = json.loads(cell_file(out, "opposites", "kl-random", ".json").read_text())
    heavy = json.loads(cell_file(out, "opposites", "kl-random+kl-weight@100", ".json").read_text())
    assert (old["kl_weight"], heavy["kl_weight"]) == (1.0, 100.0)
    assert (heavy["replay"], heavy["steps"]) == (old["replay"], old["steps"])
    assert heavy["heldout_mean_increase"] != old["heldout_mean_increase"]
    capsys.readouterr()
    assert main(args + ["replay.objective=kl", "--methods", "random"]) == 2  # another setting: refused
    assert "different replay" in capsys.readouterr().err


def test_a_study_without_task_gain_still_reports(tmp_path: Path) -> None:
    """The committed study 1 was made before task gain: its results render, with the gap said."""
    from lmforget.analysis.html_report import replay_summary
    from lmforget.replay.report import render_report

    results = json.loads(Path("studies/smollm2-ni/runs/replay/results.json").read_text())
    assert "task_gain" not in results
    report = render_report(results)
    assert "Task gain was not measured" in report and "## Per method" in report
    assert replay_summary(results)["pareto"] is None


def test_the_per_task_share_of_nones_gain_is_a_median_over_the_tasks_where_none_learned() -> None:
    from lmforget.replay.stats import summarize_gain

    # none gains 4, 1, 1 and -0.5; the arm keeps 100%, 50%, 20% of it (and gains on the task none did not)
    G = np.array([[4.0, 4.0], [1.0, 0.5], [1.0, 0.2], [-0.5, 0.3]])
    arm = summarize_gain(G, ["none", "arm"], ["a", "b", "c", "d"])["methods"]["arm"]
    assert arm["retained_vs_none"] == pytest.approx(5.0 / 5.5)  # ratio of means: the large task dominates
    assert arm["median_task_retained_vs_none"] == pytest.approx(0.5)  # task d left out: none did not learn it
    nothing = summarize_gain(np.array([[0.0, 1.0], [-1.0, 1.0]]), ["none", "arm"], ["a", "b"])["methods"]["arm"]
    assert nothing["median_task_retained_vs_none"] is None


def test_exact_match_scope_task_is_all_or_nothing_and_example_scores_the_short_answers(
        arms_study: Path, tiny_tokenizer) -> None:
    from lmforget.data.types import Message, UpstreamExample, UpstreamSet
    from lmforget.replay.cell import em_plan
    from lmforget.workdir import cell_file

    def ex(i: int, answer: str) -> UpstreamExample:
        return UpstreamExample(f"e{i}", messages=(Message("user", "q"), Message("assistant", answer)))

    answers = ["low", "dry", "a much longer answer than the others"]
    lengths = [len(tiny_tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers]
    evals, limit = UpstreamSet([ex(i, a) for i, a in enumerate(answers)]), max(lengths[:2])
    assert limit < lengths[2]
    assert em_plan(tiny_tokenizer, evals, limit, "task") is None  # one long answer turns the task off
    tokens, measured = em_plan(tiny_tokenizer, evals, limit, "example")
    assert tokens == limit + 8 and measured.tolist() == [True, True, False]
    assert em_plan(tiny_tokenizer, evals, lengths[2], "task")[0] == lengths[2] + 8
    assert em_plan(tiny_tokenizer, evals, 0, "example") is None

    # in a study: opposites' eval answers are 1 and 2 tokens; a limit of 1 keeps one of them
    base = ["replay", "replay-tiny", f"replay.run={arms_study / 'run'}", "replay.test_tasks=[opposites]",
            "replay.task_em_max_tokens=1", "--methods", "none", "-q"]
    assert main(base + ["-o", str(arms_study / "em-task")]) == 0
    cell = json.loads(cell_file(arms_study / "em-task", "opposites", "none", ".json").read_text())
    assert "task_em_gain" not in cell and cell["task_eval_n"] == 2
    out = arms_study / "em-example"
    assert main(base + ["replay.task_em_scope=example", "-o", str(out)]) == 0
    cell = json.loads(cell_file(out, "opposites", "none", ".json").read_text())
    table = pd.read_parquet(cell_file(out, "opposites", "none", ".task.parquet"))
    assert cell["task_eval_n"] == 2 and cell["task_em_n"] == 1
    assert table["correct_before"].isna().tolist() == table["correct_after"].isna().tolist()
    assert table["correct_before"].notna().sum() == 1
    assert cell["task_em_before"] == float(table["correct_before"].dropna().iloc[0])


def test_pareto_labels_never_cover_each_other_or_a_point() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from lmforget.replay.plots import place_labels

    fig = Figure(figsize=(7.5, 5.5), dpi=130)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # 16 arms crowded into a corner, as study 2's weight-space arms are
    xy = np.vstack([[0.0, 0.1], rng.uniform([1.4, 0.0], [1.75, 0.035], (15, 2))])
    ax.scatter(xy[:, 0], xy[:, 1])
    points = [(x, y, f"arm-{i}+wise-ft@0.{i}", i % 3 == 0) for i, (x, y) in enumerate(xy)]
    notes = place_labels(ax, points)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(n, renderer) for n in notes]  # the text alone, not its leader line
    assert [n.get_text() for n in notes] == [p[2] for p in points]
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1:]), points[i][2]
        for x, y in xy:
            mx, my = ax.transData.transform((x, y))
            assert not (a.x0 < mx < a.x1 and a.y0 < my < a.y1), points[i][2]  # no label over a point's centre
        assert ax.bbox.contains(a.x0, a.y0) and ax.bbox.contains(a.x1, a.y1)  # inside the axes
    assert any(n.arrow_patch is not None for n in notes)  # some were set apart, joined to their points
