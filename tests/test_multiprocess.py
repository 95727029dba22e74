"""`collect` under a two-process launch on CPU (torchrun, gloo): the main-rank scoring path.

Both processes train each task together (DDP); only rank 0 scores and writes, while rank 1 waits.
Rank 0's first scoring is held back longer than the process group's timeout: the wait must not be a
collective of the training group (NCCL's default of 10 minutes is shorter than scoring 10,000
documents), and the matrix must equal the one-process run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmforget.collect import collect
from lmforget.config import load_recipe

OVERRIDES = ["tasks.tiny.tasks=[add_numbers,opposites]", "finetune.steps=2", "finetune.batch_size=1"]
GROUP_TIMEOUT_S = 15  # the training group's timeout in this test
HOLD_S = 22  # rank 0's first scoring takes this much longer: past that timeout

WORKER = """
import json, sys, time
from datetime import timedelta

import torch.distributed as dist

dist.init_process_group("gloo", timeout=timedelta(seconds={timeout}))
import lmforget.collect as c
import lmforget.scoring.upstream as su
from lmforget.config import load_recipe

rank, real, calls = dist.get_rank(), su.score_upstream, []


def held_back(*args, **kwargs):
    calls.append(kwargs.get("description", args[5] if len(args) > 5 else "?"))
    if len(calls) == 1:
        time.sleep({hold})
    return real(*args, **kwargs)


c.score_upstream = su.score_upstream = held_back  # the base unit's, the task units' (lmforget.unit)
m = c.collect(load_recipe("tiny", {overrides!r}), sys.argv[1], progress=False)
with open(f"{{sys.argv[1]}}.rank{{rank}}.json", "w") as fh:
    json.dump({{"scored": len(calls), "calls": calls, "Z": m.Z.tolist()}}, fh)
dist.destroy_process_group()
"""


@pytest.mark.slow  # ~60-90 s: two processes, a deliberate 22 s hold, three units
def test_two_process_collect_waits_past_the_group_timeout_and_matches_one(tmp_path: Path) -> None:
    import lmforget

    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(timeout=GROUP_TIMEOUT_S, hold=HOLD_S, overrides=OVERRIDES))
    out = tmp_path / "two"
    src = str(Path(lmforget.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    ranks = [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["scored"] for r in ranks] == [3, 0], ranks[1]["calls"]  # base + 2 tasks on rank 0; rank 1 never scores
    one = collect(load_recipe("tiny", OVERRIDES), tmp_path / "one", progress=False)
    for r in ranks:
        np.testing.assert_allclose(np.array(r["Z"]), one.Z, atol=2e-5)
