"""The shared plumbing: one registry helper for every plug-in kind, and strict CLI registration."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from lmforget.errors import LmforgetError
from lmforget.registry import Registry


def test_registry_names_lookup_and_errors() -> None:
    reg: Registry[int] = Registry("colour")
    reg.register("red")(1)
    reg.register("blue")(2)
    reg.register("red")(1)  # the same object again (a module re-imported) is fine
    assert reg.names() == ["blue", "red"] and list(reg) == ["blue", "red"] and len(reg) == 2
    assert reg.get("red") == 1 and reg["blue"] == 2 and "red" in reg and "green" not in reg
    with pytest.raises(LmforgetError, match="unknown colour 'green'; choose from blue, red"):
        reg.get("green")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("red")(3)


def test_every_plugin_kind_uses_the_one_registry() -> None:
    from lmforget.data import TASKS, UPSTREAM
    from lmforget.predict import COMPLETERS
    from lmforget.scoring import SCORERS, HFScorer, VLLMScorer

    for reg in (UPSTREAM, TASKS, COMPLETERS, SCORERS):
        assert isinstance(reg, Registry)
    assert SCORERS.get("hf") is HFScorer and SCORERS.get("vllm") is VLLMScorer
    assert {"additive", "knn", "mf"} <= set(COMPLETERS.names())
    assert "dolma" in UPSTREAM and "flan" in TASKS
    with pytest.raises(LmforgetError, match="unknown upstream format"):
        UPSTREAM.get("nope")


def test_a_missing_command_module_is_an_error(monkeypatch) -> None:
    """Renaming a command module must not make its commands vanish silently."""
    import lmforget.cli as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "no_such_module"))
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        cli._register()


def test_importing_lmforget_leaves_the_umask_alone() -> None:
    code = ("import os; before = os.umask(0o077); os.umask(before); import lmforget.atomic, lmforget.cli;"
            "after = os.umask(0o022); print(oct(before), oct(after))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == out[1], out


def test_a_replay_study_does_not_load_the_collect_orchestrator() -> None:
    """Importing the study driver loads no `lmforget.collect` (running one without it: test_replay_study's
    `study` fixture)."""
    code = "import sys, lmforget.replay.study; print('lmforget.collect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_matrix_from_scores_logppl_and_binary() -> None:
    import numpy as np
    import pandas as pd

    from lmforget.matrix import ForgettingMatrix

    base = pd.DataFrame({"id": ["a", "b", "c"], "nll": [1.0, 2.0, 3.0], "correct": [True, False, True]})
    after = [pd.DataFrame({"nll": [1.5, 1.0, 3.0], "correct": [False, True, True]}),
             pd.DataFrame({"nll": [1.0, 2.5, 2.0], "correct": [True, True, False]})]
    labels = dict(tasks=["t1", "t2"], task_groups=["g", "g"], examples=["a", "b", "c"], example_sources=["s"] * 3)
    m = ForgettingMatrix.from_scores(base, after, **labels)
    np.testing.assert_allclose(m.Z, [[0.5, -1.0, 0.0], [0.0, 0.5, -1.0]])
    np.testing.assert_allclose(m.base_nll, [1.0, 2.0, 3.0])
    b = ForgettingMatrix.from_scores(base, after, kind="binary", **labels)
    assert b.examples.tolist() == ["a", "c"] and b.base_nll is None
    np.testing.assert_array_equal(b.Z, [[1.0, 0.0], [0.0, 1.0]])  # forgotten: base right, task model wrong
    assert b.meta == {"n_base_correct": 2, "n_upstream": 3}


def test_report_of_a_plain_dict_has_no_figures(tmp_path) -> None:
    """A re-read analysis.json still renders; figures come only from the arrays an Analysis carries."""
    import json

    import numpy as np

    from lmforget.analysis import Analysis, analyze, write_report
    from lmforget.matrix import ForgettingMatrix

    rng = np.random.default_rng(0)
    Z = (rng.standard_normal((4, 1)) @ rng.standard_normal((1, 30)) + 0.1 * rng.standard_normal((4, 30)))
    m = ForgettingMatrix(Z=Z, tasks=[f"t{i}" for i in range(4)], task_groups=["g"] * 4,
                         examples=[f"e{j}" for j in range(30)], example_sources=["s"] * 30)
    result = analyze(m, ranks=3, components=2)
    assert isinstance(result, Analysis) and result.U.shape == (4, 2) and result.V.shape == (2, 30)
    u, s, vt = np.linalg.svd(Z)  # the rank-2 truncation does not depend on the singular vectors' signs
    np.testing.assert_allclose(result.U * result["singular_values"][:2] @ result.V,
                               u[:, :2] * s[:2] @ vt[:2], atol=1e-5)
    write_report(result, tmp_path / "full")
    assert (tmp_path / "full" / "figures" / "components.png").is_file()
    plain = json.loads((tmp_path / "full" / "analysis.json").read_text())
    text = write_report(plain, tmp_path / "plain").read_text()
    assert "## How low-rank is it?" in text and "![" not in text and not (tmp_path / "plain" / "figures").exists()


def test_demo_command_calls_the_library_function(monkeypatch, capsys) -> None:
    import json

    import lmforget.demo
    from lmforget.cli import main

    seen = {}

    def fake(out, overrides, *, progress, log):
        seen.update(out=str(out), overrides=list(overrides), progress=progress)
        return {"shape": [1, 2], "seconds": 0.0}

    monkeypatch.setattr(lmforget.demo, "run_demo", fake)
    assert main(["demo", "-o", "somewhere", "--json", "-q", "finetune.steps=1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"shape": [1, 2], "seconds": 0.0}
    assert seen == {"out": "somewhere", "overrides": ["finetune.steps=1"], "progress": False}


# ------------------------------------------------------------------ one owner per concept
def test_task_seeds_tell_anagrams_apart_and_are_stable() -> None:
    import numpy as np

    from lmforget.analysis.similarity import task_examples
    from lmforget.data.types import Message, TaskExample, TaskSet
    from lmforget.seeding import name_key, task_rng, task_seed

    assert name_key("listen") != name_key("silent")  # a sum of character codes would collide
    assert task_seed(0, "listen") != task_seed(0, "silent")
    assert task_seed(3, "qasc") == task_seed(3, "qasc") and 0 <= task_seed(3, "qasc") < 2 ** 31
    assert np.array_equal(task_rng(1, "a").permutation(50), task_rng(1, "a").permutation(50))
    train = [TaskExample((Message("user", f"q{i}"), Message("assistant", f"a{i}"))) for i in range(40)]
    picked = {name: [e.messages[0].content for e in task_examples(TaskSet(name, "g", train, []), 8, seed=0)]
              for name in ("listen", "silent")}
    assert picked["listen"] != picked["silent"]


def test_one_value_grammar_for_every_key_value_argument() -> None:
    from lmforget.cli.predict import _parse_params
    from lmforget.config import parse_key_values, parse_overrides

    assert parse_key_values(["a=1e-3", "b=true", "c=[x, y]", "d=text", "e=", "f=null", "g=\"7\""], "k=v") == [
        ("a", 0.001), ("b", True), ("c", ["x", "y"]), ("d", "text"), ("e", ""), ("f", None), ("g", "7")]
    assert parse_overrides(["finetune.lr=2e-6"]) == [(["finetune", "lr"], 2e-6)]
    assert _parse_params(["mf.lr=1e-3", "mf.rank=8"]) == {"mf": {"lr": 0.001, "rank": 8}}
    for bad in (["novalue"], ["=3"], ["a..b=1"]):
        with pytest.raises(LmforgetError, match="expected key=value"):
            parse_key_values(bad, "k=v")
    with pytest.raises(LmforgetError, match="METHOD.NAME"):
        _parse_params(["rank=8"])


def test_reservoir_keeps_stream_order_and_builds_only_kept_items() -> None:
    import numpy as np

    from lmforget.data.pools import Reservoir

    built = []

    def make(i):
        built.append(i)
        return i

    res: Reservoir[int] = Reservoir(5, np.random.default_rng(0))
    for i in range(1000):
        res.offer(lambda i=i: make(i))
    kept = res.items()
    assert len(kept) == 5 and kept == sorted(kept) and res.seen == 1000
    assert set(kept) <= set(built) and len(built) < 100  # ~ n (1 + ln(N / n)) builds, not N
    again: Reservoir[int] = Reservoir(5, np.random.default_rng(0))
    for i in range(1000):
        again.add(i)
    assert again.items() == kept  # the same seed keeps the same items, however they are offered
    small: Reservoir[int] = Reservoir(10, np.random.default_rng(0))
    for i in range(3):
        small.add(i)
    assert Reservoir(None, None).items() == [] and small.items() == [0, 1, 2]


def test_finite_and_jsonl_writers(tmp_path) -> None:
    import json

    from lmforget.atomic import finite, write_jsonl

    assert finite({"a": float("nan"), "b": [1.0, float("inf"), (2, float("-inf"))], "c": "x"}) == {
        "a": None, "b": [1.0, None, [2, None]], "c": "x"}
    write_jsonl(tmp_path / "x.jsonl", ({"id": i, "text": "é"} for i in range(3)))
    lines = (tmp_path / "x.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"id": i, "text": "é"} for i in range(3)] and "é" in lines[0]


def test_one_gram_svd_for_analysis_and_prediction() -> None:
    import numpy as np

    from lmforget.analysis.lowrank import spectrum
    from lmforget.linalg import thin_svd
    from lmforget.predict.protocol import reveal_columns

    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 3)) @ rng.standard_normal((3, 40_000))  # rank 3, wider than one block
    U, s, Vt = thin_svd(A)
    ref = np.linalg.svd(A, compute_uv=False)
    assert len(s) == 3 and np.allclose(s, ref[:3]) and np.allclose((U * s) @ Vt, A)
    spec = spectrum(A.astype(np.float32))
    assert np.allclose(spec.singular_values[:3], ref[:3], rtol=1e-5) and len(spec.singular_values) == 6
    assert np.array_equal(reveal_columns(200, 30, 4), reveal_columns(np.arange(200), 30, 4))
    assert set(reveal_columns(np.arange(50, 80), 30, 1).tolist()) == set(range(50, 80))
    with pytest.raises(LmforgetError, match="revealed"):
        reveal_columns(10, 11, 0)


# ------------------------------------------------------------------ no mutation of caller objects
def test_chat_rendering_and_similarity_leave_the_callers_tokenizer_alone() -> None:
    import numpy as np
    from transformers.utils import logging as hf_logging

    from lmforget.analysis.similarity import sentence_encoder
    from lmforget.data.types import Message
    from lmforget.encoding import DEFAULT_CHAT_TEMPLATE, encode_chat, render_chat
    from lmforget.models import load_model

    hf_logging.enable_progress_bar()
    model, tok = load_model("tiny:llama", device="cpu")
    assert hf_logging.is_progress_bar_enabled()  # silenced while loading, the caller's setting restored
    tok.chat_template = None  # a caller's tokenizer with neither a chat template nor a pad token
    tok.pad_token = None
    assert tok.pad_token_id is None
    chat = (Message("user", "Say hi"), Message("assistant", "hi"))
    text = render_chat(tok, chat)
    assert text == tok.apply_chat_template([m.as_dict() for m in chat], tokenize=False,
                                           chat_template=DEFAULT_CHAT_TEMPLATE)
    assert sum(encode_chat(tok, chat).scored) > 0
    emb = sentence_encoder("base", model, tok).encode(["a longer text to embed here", "short"])
    assert emb.shape[0] == 2 and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert tok.chat_template is None and tok.pad_token_id is None


def _imported_modules(module: str) -> set[str]:
    """Every lmforget module `module` imports, at module level or inside a function."""
    import ast

    path = importlib.util.find_spec(module).origin
    tree = ast.parse(open(path, encoding="utf-8").read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("lmforget")}


@pytest.mark.parametrize(("low", "high"), [("lmforget.data.subsample", "lmforget.data.load"),
                                           ("lmforget.status", "lmforget.driver")])
def test_no_import_cycle_between(low: str, high: str) -> None:
    """`high` uses `low`; `low` must not reach back (sampling is handed its stream; status reads a work
    directory through lmforget.workdir)."""
    assert low in _imported_modules(high)
    assert high not in _imported_modules(low)


@pytest.mark.parametrize("reader", ["lmforget.status", "lmforget.workdir"])
def test_reading_a_work_directory_imports_no_stage(reader: str) -> None:
    """`lmforget status` reads a run, a replay study or a similarity analysis without the code that fills it."""
    code = f"import sys, {reader}; print(sorted(m for m in sys.modules if m.startswith(('lmforget.replay', "
    code += "'lmforget.collect', 'lmforget.analysis', 'lmforget.driver'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
