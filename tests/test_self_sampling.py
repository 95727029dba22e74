"""Self-sampled upstream data: exact ids, the model's own distribution, continuation-only scoring."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats

from lmforget.data.records import read_upstream_file, upstream_example
from lmforget.data.types import UpstreamExample, UpstreamSet
from lmforget.encoding import encode_upstream
from lmforget.errors import LmforgetError
from lmforget.self_sampling import first_sentences, sample_continuations, self_sampled_upstream


def _peaky(model, scale: float = 25.0):
    """A copy of a tiny model with sharpened output logits (a random tiny model is near uniform)."""
    m = copy.deepcopy(model)
    m.get_output_embeddings().weight.data.mul_(scale)
    return m


def _next_probs(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    return torch.softmax(logits.double(), -1).numpy()


def _chi2_p(counts: np.ndarray, probs: np.ndarray) -> float:
    """Chi-square goodness of fit, merging the bins expected below 5 into one."""
    n = counts.sum()
    exp = probs * n
    small = exp < 5
    obs = np.append(counts[~small], counts[small].sum())
    ex = np.append(exp[~small], exp[small].sum())
    if ex[-1] == 0:
        obs, ex = obs[:-1], ex[:-1]
    return float(stats.chisquare(obs, ex * obs.sum() / ex.sum()).pvalue)


def test_ids_round_trip_exactly_and_only_the_continuation_is_scored(tiny_tokenizer, tmp_path):
    ids = (5, 17, 300, 2, 0, 767, 1)  # any ids, specials included: never decoded and re-encoded
    ex = UpstreamExample(id="a", text="ignored for scoring", input_ids=ids, prompt_len=3)
    line = json.loads(json.dumps(ex.to_json()))
    back = upstream_example(line, "row 1", default_id="0")
    assert back == ex and back.input_ids == ids
    (tmp_path / "upstream.jsonl").write_text(json.dumps(ex.to_json()) + "\n")
    assert read_upstream_file(tmp_path / "upstream.jsonl").examples == [ex]  # a run's data/ copy reads back
    enc = encode_upstream(tiny_tokenizer, ex)
    assert enc.input_ids == list(ids)
    assert enc.scored == [False, False, False, True, True, True, True]
    assert encode_upstream(tiny_tokenizer, ex, max_length=5).scored == [False, True, True, True, True]
    with pytest.raises(LmforgetError, match="prompt_len"):
        UpstreamExample(id="b", text="x", input_ids=(1, 2), prompt_len=2)  # no continuation left
    # The ids are the data: a decode that another tokenizers release renders differently is the same
    # data (a committed run resumes), other ids are not.
    fp = UpstreamSet([ex]).fingerprint()
    assert UpstreamSet([replace(ex, text="rendered otherwise")]).fingerprint() == fp
    assert UpstreamSet([replace(ex, input_ids=(5, 17, 300, 2, 0, 767, 2))]).fingerprint() != fp


def test_first_token_frequencies_match_softmax(tiny_llama):
    model = _peaky(tiny_llama[0], 10.0)
    short, long = [7, 8, 9], [11, 12, 13, 14, 15, 16, 17]  # different lengths: left padding is exercised
    reps = 3000
    drawn = sample_continuations(model, [short, long] * reps, 1, seed=0, batch_size=500)
    vocab = model.get_output_embeddings().weight.shape[0]
    for k, prompt in enumerate((short, long)):
        counts = np.bincount([d[0] for d in drawn[k::2]], minlength=vocab)
        probs = _next_probs(model, prompt)
        assert (probs > 0.01).sum() > 3  # several plausible tokens: the test has power
        assert _chi2_p(counts, probs) > 1e-3
        # the same test rejects a slightly different distribution (temperature 0.8)
        sharper = probs ** 1.25 / (probs ** 1.25).sum()
        assert _chi2_p(counts, sharper) < 1e-6


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_every_step_is_the_inverse_cdf_of_its_own_uniform(load_tiny, arch):
    """With the KV cache and padding, each draw equals the inverse CDF of the full teacher-forced conditional."""
    model = _peaky(load_tiny(arch)[0], 5.0)
    rng = np.random.default_rng(1)
    prompts = [list(rng.integers(2, 700, size=int(rng.integers(1, 9)))) for _ in range(40)]
    L = 6
    drawn = sample_continuations(model, prompts, L, seed=3, batch_size=7)
    u = np.random.default_rng(3).random((len(prompts), L))
    assert all(len(d) == L for d in drawn)
    for i, (p, ys) in enumerate(zip(prompts, drawn, strict=True)):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([p + ys])).logits[0, len(p) - 1:-1]
        cdf = torch.softmax(logits.double(), -1).cumsum(-1).numpy()
        for t, y in enumerate(ys):
            lo = cdf[t, y - 1] if y > 0 else 0.0
            assert lo - 1e-6 <= u[i, t] * cdf[t, -1] <= cdf[t, y] + 1e-6
    # batching does not change an example's sample
    assert sample_continuations(model, prompts[:5], L, seed=3, batch_size=2) == drawn[:5]


def test_exactly_L_tokens_and_eos_is_an_ordinary_token(tiny_llama):
    model, tok = tiny_llama
    model = copy.deepcopy(model)
    head = model.get_output_embeddings()
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    biased.weight.data = head.weight.data.clone()
    biased.bias.data.zero_()
    biased.bias.data[tok.eos_token_id] = 8.0  # EOS likely at every step
    model.set_output_embeddings(biased)
    drawn = sample_continuations(model, [[5, 6, 7]] * 50, 12, seed=0)
    assert all(len(d) == 12 for d in drawn)
    assert sum(d.count(tok.eos_token_id) for d in drawn) > 100  # neither suppressed nor a stop
    assert any(tok.eos_token_id in d[:6] for d in drawn)


def test_first_sentences():
    text = "Paris is the capital of France. It has 2.1 million people. Dr. Smith lives there."
    assert first_sentences(text, 1) == "Paris is the capital of France."
    assert first_sentences(text, 2) == "Paris is the capital of France. It has 2.1 million people."


def _spec(tmp_path, **kw):
    ctx = tmp_path / "contexts.jsonl"
    if not ctx.exists():
        ctx.write_text("".join(json.dumps({"id": f"c{i}", "text": f"Sentence number {i} is here. More text."}) + "\n"
                               for i in range(6)))
    return {"format": "self-sampled", "contexts": {"format": "records", "path": str(ctx)},
            "context_sentences": 1, "new_tokens": 5, **kw}


def test_self_sampled_upstream_is_cached_under_its_fingerprint(tmp_path, monkeypatch, tiny_tokenizer):
    cache = tmp_path / "cache"
    first = self_sampled_upstream(_spec(tmp_path), "tiny:llama", cache=cache, progress=False)
    assert len(list(cache.iterdir())) == 1
    assert (first.stats["read"], first.stats["chosen"]) == (6, 6)  # the contexts' counts reach the logs
    for ex in first:
        assert len(ex.input_ids) - ex.prompt_len == 5
        assert ex.input_ids[:ex.prompt_len] == tuple(tiny_tokenizer(ex.id.replace("c", "Sentence number ")
                                                                    + " is here.")["input_ids"])
        assert encode_upstream(tiny_tokenizer, ex).n_scored == 5

    import lmforget.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the cache was not used"))
    again = self_sampled_upstream(_spec(tmp_path), "tiny:llama", cache=cache, progress=False)
    assert [e.input_ids for e in again] == [e.input_ids for e in first]
    monkeypatch.undo()
    other = self_sampled_upstream(_spec(tmp_path, seed=1), "tiny:llama", cache=cache, progress=False)
    assert len(list(cache.iterdir())) == 2
    assert [e.input_ids for e in other] != [e.input_ids for e in first]
    with pytest.raises(LmforgetError, match="base model"):
        self_sampled_upstream(_spec(tmp_path, model="tiny:gpt2"), "tiny:llama", cache=cache)


def test_samples_file_pins_the_draws_and_refuses_other_ones(tmp_path, monkeypatch):
    """Sampling is exact only for one build and thread count; the pinned ids are what a run resumes from."""
    import lmforget.models as models

    pin = tmp_path / "pinned" / "samples.jsonl"
    first = self_sampled_upstream(_spec(tmp_path, samples=str(pin)), "tiny:llama", cache=tmp_path / "c1",
                                  progress=False)
    lines = [json.loads(x) for x in pin.read_text().splitlines()]
    assert lines[0]["self_sampled"]["new_tokens"] == 5 and len(lines) == 7
    assert [tuple(r["continuation"]) for r in lines[1:]] == [e.input_ids[e.prompt_len:] for e in first]
    # Another machine: an empty cache, and the pinned ids (here edited, as a sampler of another thread
    # count might draw them) are used as they are, never redrawn.
    lines[1]["continuation"][0] = (lines[1]["continuation"][0] + 1) % 100
    pin.write_text("".join(json.dumps(x) + "\n" for x in lines))
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("resampled despite the pin"))
    again = self_sampled_upstream(_spec(tmp_path, samples=str(pin)), "tiny:llama", cache=tmp_path / "c2",
                                  progress=False)
    ex0 = again.examples[0]
    assert ex0.input_ids[ex0.prompt_len] == lines[1]["continuation"][0]
    assert [e.input_ids for e in again][1:] == [e.input_ids for e in first][1:]
    with pytest.raises(LmforgetError, match="drawn with another seed"):
        self_sampled_upstream(_spec(tmp_path, samples=str(pin), seed=1), "tiny:llama", cache=tmp_path / "c2")
    with pytest.raises(LmforgetError, match="drawn with another model"):
        self_sampled_upstream(_spec(tmp_path, samples=str(pin), model="tiny:gpt2"), "tiny:gpt2",
                              cache=tmp_path / "c2")
    pin.write_text("".join(json.dumps(x) + "\n" for x in lines[:-1]))
    with pytest.raises(LmforgetError, match="damaged"):
        self_sampled_upstream(_spec(tmp_path, samples=str(pin)), "tiny:llama", cache=tmp_path / "c2")
    pin.write_text('{"id": "c0"}\n')
    with pytest.raises(LmforgetError, match="not a samples file"):
        self_sampled_upstream(_spec(tmp_path, samples=str(pin)), "tiny:llama", cache=tmp_path / "c2")


def test_spec_rules():
    from lmforget.data import load_upstream, upstream_spec

    with pytest.raises(LmforgetError, match="needs 'contexts'"):
        upstream_spec({"format": "self-sampled", "new_tokens": 4})
    with pytest.raises(LmforgetError, match="under 'contexts'"):
        upstream_spec({"format": "self-sampled", "new_tokens": 4, "n": 3, "contexts": {"format": "wikipedia"}})
    with pytest.raises(LmforgetError, match="self-sampled' only"):
        upstream_spec({"format": "wikipedia", "new_tokens": 4})
    with pytest.raises(LmforgetError, match="'samples' applies to format 'self-sampled' only"):
        upstream_spec({"format": "wikipedia", "samples": "s.jsonl"})
    with pytest.raises(LmforgetError, match="drawn from a model"):
        load_upstream({"format": "self-sampled", "new_tokens": 4, "contexts": {"format": "wikipedia"}})


def test_collect_scores_and_trains_the_continuation_only(tmp_path):
    from lmforget.collect import collect
    from lmforget.config import load_recipe
    from lmforget.models import load_recipe_model
    from lmforget.replay.mixture import ReplayMixture
    from lmforget.runs import Run

    recipe = load_recipe("tiny", ["upstream=" + json.dumps(_spec(tmp_path)), "finetune.steps=1"])
    matrix = collect(recipe, tmp_path / "run", progress=False)
    run = Run.open(tmp_path / "run")
    assert (run.base_scores()["n_tokens"] == 5).all()
    up = run.upstream()
    assert all(len(ex.input_ids) - ex.prompt_len == 5 for ex in up)
    assert matrix.shape[1] == 6 and np.isfinite(matrix.Z).all()
    _, tok = load_recipe_model(recipe)
    items = ReplayMixture.build(tok, run.tasks()[0], recipe.finetune, list(up)[:2]).replay_items
    for ex, enc in zip(list(up)[:2], items, strict=True):
        labels = enc.labels()
        assert labels[:ex.prompt_len] == [-100] * ex.prompt_len
        assert labels[ex.prompt_len:] == list(ex.input_ids[ex.prompt_len:])


def test_replay_study_on_a_self_sampled_run_trains_only_the_continuations(tmp_path):
    """The study end to end on self-sampled upstream data: every replayed example adds exactly its L
    continuation tokens to the loss (its context never), and the held-out set is scored."""
    from lmforget.cli import main
    from lmforget.collect import collect
    from lmforget.config import load_recipe

    ctx = tmp_path / "contexts.jsonl"
    ctx.write_text("".join(json.dumps({"id": f"c{i}", "text": f"Sentence number {i} is here. More text."}) + "\n"
                           for i in range(48)))
    spec = {"format": "self-sampled", "contexts": {"format": "records", "path": str(ctx)},
            "context_sentences": 1, "new_tokens": 5}
    collect(load_recipe("tiny", ["upstream=" + json.dumps(spec)]), tmp_path / "run", progress=False)
    out = tmp_path / "study"
    assert main(["replay", "replay-tiny", f"replay.run={tmp_path / 'run'}", "replay.test_tasks=[add_numbers]",
                 "--methods", "none,random,online-additive,replay-only", "-o", str(out), "-q"]) == 0
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "results").rglob("*.json")}
    assert set(cells) == {"none", "random", "online-additive", "replay-only"}
    assert cells["none"]["replay_examples"] == 0
    for name in ("random", "online-additive", "replay-only"):
        c = cells[name]
        assert c["replay_examples"] > 0 and c["replay_tokens"] == 5 * c["replay_examples"], name
        assert np.isfinite(c["heldout_mean_increase"])
    assert cells["replay-only"]["task_examples"] == 0
