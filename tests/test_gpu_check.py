"""benchmarks/gpu_check.py runs anywhere: without CUDA it says so, runs its CPU part, and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import lmforget

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_without_cuda_runs_its_cpu_part_and_says_what_it_skipped(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        import pytest

        pytest.skip("a CUDA machine runs the full check: python benchmarks/gpu_check.py")
    env = {**os.environ, "PYTHONPATH": str(Path(lmforget.__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "needs CUDA" in proc.stdout and "| binary metric, bf16 lr-0 fine-tuning (tiny:llama) | ok |" in proc.stdout
    assert "1 ok, 0 failed, 5 skipped" in proc.stdout
