"""The vLLM backend against a stand-in that enforces vLLM's start-up checks (tests/fakes/vllm).

vLLM needs a GPU, so these tests run the backend's real code (engine length, the one shared engine,
sleep and reload, closing) against a `vllm` module that computes real log-probabilities with
transformers and refuses what vLLM refuses: a max_model_len above the model's positions, a start-up
without enough free memory (an engine still referenced holds its share), scoring a sleeping engine
or one whose weights a level-2 sleep discarded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lmforget.collect import collect
from lmforget.config import load_recipe
from lmforget.errors import LmforgetError

FAKES = Path(__file__).parent / "fakes"


@pytest.fixture
def fake_vllm(monkeypatch):
    """`import vllm` finds the stand-in; the engine and the simulated GPU are reset around the test."""
    monkeypatch.syspath_prepend(str(FAKES))
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)
    import vllm

    from lmforget.scoring import vllm as backend

    vllm.reset()
    yield vllm
    backend.close_engine()
    vllm.reset()


@pytest.fixture
def tiny_dir(tmp_path, load_tiny) -> tuple[Path, object]:
    model, tok = load_tiny("llama")
    path = tmp_path / "tiny-model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, tok


def test_the_stand_in_refuses_what_vllm_refuses(fake_vllm, tiny_dir) -> None:
    path, _ = tiny_dir
    with pytest.raises(ValueError, match="greater than the derived max_model_len"):
        fake_vllm.LLM(str(path), max_model_len=2049)
    first = fake_vllm.LLM(str(path), gpu_memory_utilization=0.85)
    with pytest.raises(ValueError, match="Free memory on device"):
        fake_vllm.LLM(str(path), gpu_memory_utilization=0.85)
    with pytest.raises(ValueError, match="Sleep mode is not enabled"):
        first.sleep(level=1)
    del first
    sleeper = fake_vllm.LLM(str(path), gpu_memory_utilization=0.85, enable_sleep_mode=True)
    sleeper.sleep(level=2)
    sleeper.wake_up()
    prompt = {"prompt_token_ids": [1, 2, 3]}
    with pytest.raises(RuntimeError, match="discarded"):
        sleeper.generate([prompt], fake_vllm.SamplingParams(max_tokens=1, prompt_logprobs=0))


def test_engine_length_never_exceeds_the_models_positions(fake_vllm, tiny_dir) -> None:
    """Pythia: 2048 positions and score.max_length 2048; max_length + 1 would not start."""
    from lmforget.scoring.vllm import VLLMScorer

    path, tok = tiny_dir  # the tiny models have 2048 positions
    scorer = VLLMScorer(str(path), tokenizer=tok, max_length=2048, dtype="float32")
    assert scorer.llm.max_model_len == 2048
    with pytest.raises(LmforgetError, match="longer than the model's 2048 positions"):
        VLLMScorer(str(path), tokenizer=tok, max_length=4096, dtype="float32")


def test_rebuild_frees_the_old_engine_before_starting_a_new_one(fake_vllm, tiny_dir, monkeypatch) -> None:
    """A vLLM that cannot reload in place: the shared engine is rebuilt, which only fits once the old
    one is gone (no reference left in the engine table, a scorer or an exception's traceback)."""
    from lmforget.scoring import vllm as backend

    path, tok = tiny_dir
    monkeypatch.setattr(backend, "engine_dir", lambda: path)
    fake_vllm.GPU["reload"] = False
    backend.shared_scorer(str(path), tok, max_length=64, dtype="float32")
    backend.sleep_engine()
    scorer = backend.shared_scorer(str(path), tok, max_length=64, dtype="float32")
    assert fake_vllm.GPU["engines"] == 2 and fake_vllm.GPU["used"] == scorer.llm.need


def test_close_removes_the_engine_folder(fake_vllm, tiny_dir, tmp_path, monkeypatch) -> None:
    import shutil

    from lmforget.scoring import vllm as backend

    path, tok = tiny_dir
    folder = tmp_path / "engine"
    shutil.copytree(path, folder)
    monkeypatch.setattr(backend, "engine_dir", lambda: folder)
    backend.shared_scorer(str(folder), tok, max_length=64, dtype="float32")
    backend.close_engine()
    assert not folder.exists() and fake_vllm.GPU["used"] == 0


def test_collect_with_the_vllm_backend_equals_hf(fake_vllm, tmp_path) -> None:
    """Two tasks through the shared engine: sleep while training, wake, reload the fine-tuned weights,
    score; the matrix equals the HF backend's, and the engine and its folder are gone afterwards."""
    from lmforget.scoring.vllm import engine_dir

    over = ["tasks.tiny.tasks=[add_numbers,opposites]", "finetune.steps=2"]
    hf = collect(load_recipe("tiny", over), tmp_path / "hf", progress=False)
    vl = collect(load_recipe("tiny", over + ["score.backend=vllm"]), tmp_path / "vllm", progress=False)
    np.testing.assert_allclose(vl.Z, hf.Z, atol=1e-5)
    assert np.abs(hf.Z).max() > 1e-3  # the fine-tuned weights were scored, not the base's
    assert fake_vllm.GPU["engines"] == 1  # one engine for the base and both tasks
    assert fake_vllm.GPU["used"] == 0 and not engine_dir().exists()


def test_replay_cells_train_while_the_engine_sleeps(fake_vllm, tmp_path, monkeypatch) -> None:
    """Each replay cell after the first used to train beside an awake engine (85% of the GPU)."""
    import lmforget.unit as unit
    from lmforget.replay.study import run_study
    from lmforget.replay.study_setup import load_study_recipe

    over = ["tasks.tiny.tasks=[add_numbers,opposites,compare_numbers]", "finetune.steps=1", "score.backend=vllm"]
    collect(load_recipe("tiny", over), tmp_path / "run", progress=False)
    held, real = [], unit.train

    def train(*args, **kwargs):
        held.append(fake_vllm.GPU["used"])  # what the engine holds while this cell's model trains
        return real(*args, **kwargs)

    monkeypatch.setattr(unit, "train", train)
    recipe = load_study_recipe("replay-tiny", [f"replay.run={tmp_path / 'run'}", "replay.test_tasks=[add_numbers]",
                                               "replay.methods=[none,random]"])
    run_study(recipe, tmp_path / "study", progress=False)
    assert len(held) == 2 and held == [0, 0]
