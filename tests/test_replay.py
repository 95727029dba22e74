"""Replay building blocks: held-out split, selection strategies, mixture arithmetic, stats, method names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmforget.config import FinetuneConfig
from lmforget.data.types import TaskExample, TaskSet, UpstreamExample
from lmforget.errors import LmforgetError
from lmforget.finetune import plan_steps
from lmforget.replay.heldout import check_disjoint, draw_probes, split_heldout
from lmforget.replay.methods import parse_method, parse_methods
from lmforget.replay.mixture import ReplayMixture, mixture_steps, n_replay, replay_stretch
from lmforget.replay.selection import select, select_mir, select_random, select_softmax, select_top
from lmforget.replay.stats import below_zero, bootstrap_ci, by_reference_quantile, holm, paired_tests, summarize

IDS = [f"ex-{i:03d}" for i in range(200)]


# ------------------------------------------------------------------ held-out
def test_heldout_is_seeded_disjoint_and_order_free() -> None:
    a = split_heldout(IDS, 50, seed=3)
    assert len(a.heldout) == 50 and len(a.pool) == 150
    assert not set(a.heldout_ids) & set(a.pool_ids)
    assert sorted(a.heldout_ids + a.pool_ids) == sorted(IDS)
    assert split_heldout(IDS, 50, seed=3).heldout_ids == a.heldout_ids
    assert split_heldout(IDS, 50, seed=4).heldout_ids != a.heldout_ids
    # the same ids in another order give the same held-out set; a larger set contains the smaller
    shuffled = list(np.random.default_rng(0).permutation(IDS))
    assert sorted(split_heldout(shuffled, 50, seed=3).heldout_ids) == sorted(a.heldout_ids)
    assert set(a.heldout_ids) <= set(split_heldout(IDS, 120, seed=3).heldout_ids)


@pytest.mark.parametrize("size", [0, 200, 500])
def test_heldout_size_must_leave_a_pool(size: int) -> None:
    with pytest.raises(LmforgetError, match="held-out size"):
        split_heldout(IDS, size)


def test_probes_come_from_the_pool_and_are_fixed() -> None:
    split = split_heldout(IDS, 100, seed=0)
    probes = draw_probes(split, 30, seed=0)
    assert len(set(probes.tolist())) == 30 and set(probes.tolist()) <= set(split.pool.tolist())
    assert np.array_equal(probes, draw_probes(split, 30, seed=0))
    usable = np.ones(len(IDS), bool)
    usable[split.pool[:90]] = False
    assert set(draw_probes(split, 10, seed=0, usable=usable).tolist()) == set(split.pool[90:].tolist())
    with pytest.raises(LmforgetError, match="probe"):
        draw_probes(split, 11, seed=0, usable=usable)


# ----------------------------------------------------------------- selection
SCORES = np.random.default_rng(1).normal(size=300)


@pytest.mark.parametrize("strategy", ["random", "softmax", "top", "mir"])
def test_selection_is_without_replacement_and_seeded(strategy: str) -> None:
    kw = dict(temperature=0.5, group=7)
    picks = select(strategy, SCORES, 40, seed=5, **kw)
    assert len(picks) == 40 and len(set(picks.tolist())) == 40
    assert picks.min() >= 0 and picks.max() < len(SCORES)
    assert np.array_equal(picks, select(strategy, SCORES, 40, seed=5, **kw))
    # the whole pool can be taken, still without repeats
    assert sorted(select(strategy, SCORES, 300, seed=1, **kw).tolist()) == list(range(300))
    if strategy != "top":
        assert not np.array_equal(picks, select(strategy, SCORES, 40, seed=6, **kw))
    with pytest.raises(LmforgetError, match="larger than the replay pool"):
        select(strategy, SCORES, 301, seed=0, **kw)


def test_softmax_large_temperature_is_uniform() -> None:
    # a huge score gap that any finite T of order 1 would follow; T = 1e9 must ignore it
    scores = np.r_[np.full(5, 100.0), np.zeros(15)]
    counts = np.zeros(20)
    for seed in range(3000):
        counts[select_softmax(scores, 4, temperature=1e9, seed=seed)] += 1
    freq = counts / 3000  # each example is chosen with probability 4/20 under uniform sampling
    assert np.abs(freq - 0.2).max() < 0.035
    # and T = inf is exactly uniform sampling without replacement
    assert len(set(select_softmax(scores, 4, temperature=math.inf, seed=0).tolist())) == 4


def test_softmax_small_temperature_is_top_n() -> None:
    for seed in range(20):
        picks = select_softmax(SCORES, 25, temperature=1e-9, seed=seed)
        assert set(picks.tolist()) == set(select_top(SCORES, 25).tolist())
    assert set(select_top(SCORES, 25).tolist()) == set(np.argsort(SCORES)[-25:].tolist())


def test_softmax_draw_follows_the_softmax_probabilities() -> None:
    # one draw: P(i) = softmax(s / T)_i; with s / T = log(1, 2, 3) the probabilities are 1/6, 2/6, 3/6
    T = 0.1
    scores = T * np.log([1.0, 2.0, 3.0])
    counts = np.bincount([select_softmax(scores, 1, T, seed=s)[0] for s in range(6000)], minlength=3)
    assert np.allclose(counts / 6000, [1 / 6, 2 / 6, 3 / 6], atol=0.025)


def test_mir_keeps_the_most_forgotten_of_each_group() -> None:
    assert select_mir(SCORES, 1, group=300, seed=0).tolist() == [int(np.argmax(SCORES))]
    picks = select_mir(SCORES, 10, group=30, seed=2)
    assert int(np.argmax(SCORES)) in picks.tolist()  # the global maximum wins whichever group it is in
    # best-of-30 picks are far above a random pick on average (the reference picked the least forgotten)
    assert SCORES[picks].mean() > np.quantile(SCORES, 0.8)
    # pool smaller than n x G: groups shrink, picks stay distinct
    assert len(set(select_mir(SCORES, 100, group=30, seed=0).tolist())) == 100


def test_selection_rejects_nan_scores_and_unknown_strategy() -> None:
    with pytest.raises(LmforgetError, match="NaN"):
        select("top", np.array([0.1, np.nan]), 1, seed=0)
    with pytest.raises(LmforgetError, match="unknown selection strategy"):
        select("best", SCORES, 1, seed=0)
    assert len(select_random(5, 5, seed=0)) == 5


# ------------------------------------------------------------------ mixtures
@pytest.mark.parametrize("n_task, rate, expected", [(48, 1 / 32, 2), (31, 1 / 32, 1), (32, 1 / 32, 2),
                                                    (1000, 1 / 32, 32), (1000, 1 / 8, 126), (8, 0.125, 2)])
def test_n_replay_formula(n_task: int, rate: float, expected: int) -> None:
    assert n_replay(n_task, rate) == expected == math.floor(n_task * rate) + 1


def test_steps_are_stretched_by_one_plus_rate() -> None:
    cfg = FinetuneConfig(steps=1000, effective_batch=8, max_epochs=3)
    n_task = 10_000
    n_rep = n_replay(n_task, 1 / 32)
    assert replay_stretch(1 / 32) == 1 + 1 / 32
    assert mixture_steps(n_task, n_rep, cfg, 1 / 32) == math.ceil(1000 * (1 + 1 / 32)) == 1032
    assert mixture_steps(n_task, 0, cfg, None) == 1000  # no replay, no stretch
    # the epoch cap still applies to the mixture's size
    small = FinetuneConfig(steps=1000, effective_batch=8, max_epochs=3)
    assert mixture_steps(40, 2, small, 1 / 32) == plan_steps(42, small, stretch=1 + 1 / 32) == math.ceil(3 * 42 / 8)


def _upstream(n: int) -> list[UpstreamExample]:
    return [UpstreamExample(id=f"u{i}", text=f"upstream text number {i} with a few words") for i in range(n)]


def _task() -> TaskSet:
    return TaskSet("t", "g", [TaskExample.from_prompt(f"q{i}?", f"a{i}") for i in range(6)])


def test_heldout_examples_never_enter_a_mixture(tiny_tokenizer) -> None:
    ups = _upstream(20)
    split = split_heldout([u.id for u in ups], 8, seed=0)
    cfg = FinetuneConfig(max_length=64)
    pool = [ups[i] for i in split.pool]
    held = [ups[i] for i in split.heldout]
    mix = ReplayMixture.build(tiny_tokenizer, _task(), cfg, pool[:3], split.heldout_ids)
    assert len(mix) == 6 + 3 and mix.replay_ids == [u.id for u in pool[:3]]
    with pytest.raises(LmforgetError, match="held-out"):
        ReplayMixture.build(tiny_tokenizer, _task(), cfg, [pool[0], held[0]], split.heldout_ids)
    with pytest.raises(LmforgetError, match="held-out"):
        mix.set_replay([pool[3], pool[4], held[1]])  # a swap is checked too
    assert mix.replay_ids == [u.id for u in pool[:3]]  # and a refused swap changes nothing
    with pytest.raises(LmforgetError, match="keep the number"):
        mix.set_replay(pool[3:5])
    with pytest.raises(LmforgetError, match="distinct"):
        mix.set_replay([pool[3], pool[3], pool[4]])
    with pytest.raises(LmforgetError, match="held-out"):
        check_disjoint(["u1", held[0].id], split.heldout_ids)
    # slots hold the replayed examples' tokens with every scored token as label
    item = mix[7]
    assert item["input_ids"] and any(x != -100 for x in item["labels"])


# --------------------------------------------------------------------- stats
def test_summary_reductions_and_paired_tests() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.4, size=8)
    F = np.stack([base, base * 0.8, base * 0.6 + rng.normal(0, 0.005, 8)], axis=1)
    F[:, 0] += rng.normal(0, 0.002, 8)
    out = summarize(F, ["none", "random", "oracle"], [f"t{i}" for i in range(8)])
    m = out["methods"]
    for j, name in enumerate(["none", "random", "oracle"]):  # each task's number in its column, the mean over them
        assert m[name]["per_task"] == {f"t{i}": pytest.approx(F[i, j]) for i in range(8)}
        assert m[name]["mean_increase"] == pytest.approx(F[:, j].mean())
    assert m["random"]["reduction_vs_none"] == pytest.approx(1 - F[:, 1].mean() / F[:, 0].mean())
    assert m["oracle"]["reduction_vs_random"] == pytest.approx(1 - F[:, 2].mean() / F[:, 1].mean())
    test = m["oracle"]["vs_random"]
    assert test["n"] == 8 and test["wins"] == 8 and test["t_p"] < 1e-3
    assert test["wilcoxon_p"] == pytest.approx(2 / 2 ** 8)  # exact: all 8 differences negative
    # a method worse than its reference has a negative reduction, whatever the sign of the reference
    neg = summarize(np.array([[-0.02, -0.01], [-0.03, -0.025]]), ["random", "x"], ["a", "b"])
    assert neg["methods"]["x"]["reduction_vs_random"] < 0
    undefined = paired_tests(np.array([0.1]), np.array([0.2]))
    assert math.isnan(undefined["t_p"]) and "note" in undefined and all(math.isnan(v) for v in undefined["ci"])
    lo, hi = test["ci"]
    assert lo <= (F[:, 2] - F[:, 1]).mean() <= hi < 0
    assert test["t_p_holm"] == test["t_p"]  # a family of one comparison: nothing to adjust


def test_bins_follow_the_reference_rank_per_task() -> None:
    ref = np.array([[4.0, 1.0, 3.0, 2.0, np.nan, 8.0, 7.0, 6.0, 5.0],  # NaN reference: left out
                    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]])
    vals = np.stack([np.stack([r, 2 * r]) for r in ref])  # [T=2, M=2, N]: method b doubles a
    vals[1, :, 8] = np.nan  # undefined value: left out too
    out = by_reference_quantile(ref, vals, ["random", "b"], n_bins=4)
    # task 0 bins (sorted 1..8): {1,2} {3,4} {5,6} {7,8}; task 1 (1..8 too) -> means 1.5, 3.5, 5.5, 7.5
    assert out["methods"]["random"] == pytest.approx([1.5, 3.5, 5.5, 7.5])
    assert out["methods"]["b"] == pytest.approx([3.0, 7.0, 11.0, 15.0])
    assert out["vs_random"]["b"]["mean_difference"] == pytest.approx([1.5, 3.5, 5.5, 7.5])
    assert out["vs_random"]["b"]["wins"] == [0, 0, 0, 0] and out["n_tasks"] == 2


def test_holm_adjusts_the_family_step_down() -> None:
    # sorted 0.01, 0.03, 0.04: x3, x2 and x1, then monotone: 0.03, 0.06, max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.5, math.nan, 0.2])  # NaN is not counted in the family
    assert math.isnan(out[1]) and out[0] == pytest.approx(0.5) and out[2] == pytest.approx(0.4)
    F = np.array([[0.10, 0.05, 0.04, 0.06], [0.12, 0.06, 0.05, 0.05], [0.09, 0.05, 0.045, 0.052]])
    m = summarize(F, ["none", "random", "a", "b"], ["x", "y", "z"])["methods"]
    assert [m["a"]["vs_random"]["t_p_holm"], m["b"]["vs_random"]["t_p_holm"]] == pytest.approx(
        holm([m["a"]["vs_random"]["t_p"], m["b"]["vs_random"]["t_p"]]))
    assert "t_p_holm" not in m["none"]["vs_random"]  # no replay is the reference, not in the family


def test_arms_that_end_below_the_base_model_are_flagged() -> None:
    rng = np.random.default_rng(1)
    F = np.stack([rng.normal(0.07, 0.01, 12), rng.normal(-0.08, 0.01, 12), rng.normal(0.03, 0.05, 12)], axis=1)
    m = summarize(F, ["none", "random", "oracle"], [f"t{i}" for i in range(12)])["methods"]
    assert m["random"]["vs_zero"]["adaptation"] and m["random"]["vs_zero"]["t_p"] < 1e-6
    assert not m["none"]["vs_zero"]["adaptation"]  # significantly above 0: forgetting, not adaptation
    assert not below_zero(np.array([-0.01, 0.02, -0.015, 0.01]))["adaptation"]  # not significant
    lo, hi = bootstrap_ci(np.full(5, 0.3))
    assert lo == hi == pytest.approx(0.3)


# ------------------------------------------------------------------- methods
def test_method_names() -> None:
    assert parse_method("offline-mf").completer == "mf"
    m = parse_method("oracle:top")
    assert (m.source, m.strategy) == ("oracle", "top")
    assert parse_method("online-knn", default_strategy="mir").strategy == "mir"
    assert [x.name for x in parse_methods("none,random, oracle")] == ["none", "random", "oracle"]
    assert parse_method("replay-only").source == "replay-only" and parse_method("replay-only").replays
    for bad in ("oracle:best", "offline-nope", "magic", "random:top", "replay-only:top"):
        with pytest.raises(LmforgetError):
            parse_method(bad)
    with pytest.raises(LmforgetError, match="twice"):
        parse_methods("random,random")


# -------------------------------------------------------------------- scores
def test_offline_reveal_is_without_replacement_from_the_candidates() -> None:
    from lmforget.predict.protocol import reveal_columns
    from lmforget.replay.scores import offline_scores

    candidates = np.arange(50, 150)
    cols = reveal_columns(candidates, 30, seed=1)
    assert len(set(cols.tolist())) == 30 and set(cols.tolist()) <= set(candidates.tolist())
    assert np.array_equal(cols, reveal_columns(candidates, 30, seed=1))
    with pytest.raises(LmforgetError, match="revealed"):
        reveal_columns(candidates, 101, seed=0)
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(6, 1)) + rng.normal(size=(1, 200))  # additive structure
    true = Z[0]  # the new task's row: its own offset plus the shared example effects
    row, revealed = offline_scores(Z[1:], true, candidates, 30, "additive", seed=0)
    assert np.allclose(row[revealed], true[revealed])  # revealed entries are kept
    assert np.allclose(row, true, atol=1e-6)  # exact structure, exact completion


def test_score_file(tmp_path) -> None:
    from lmforget.replay.scores import read_score_file

    path = tmp_path / "s.csv"
    path.write_text("task,id,score\na,u1,0.5\na,u2,-0.1\nb,u1,9\n")
    assert np.allclose(read_score_file(path, ["u2", "u1", "u3"], task="a"), [-0.1, 0.5, np.nan], equal_nan=True)
    with pytest.raises(LmforgetError, match="no rows for task"):
        read_score_file(path, ["u1"], task="c")
    (tmp_path / "bad.csv").write_text("id,value\nu1,1\n")
    with pytest.raises(LmforgetError, match="missing column 'score'"):
        read_score_file(tmp_path / "bad.csv", ["u1"])
