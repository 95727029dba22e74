"""Fan-out: the same 8-task tiny collect with the local executor and with Ray (2 single-threaded workers).

    python benchmarks/bench_fanout.py [--tasks 8] [--steps 150] [--workers 2]

Both runs happen here, one after the other, on the same machine, single-threaded per process
(OMP_NUM_THREADS=1), and must give the same matrix. Printed: wall time of each, the ratio, and the
ratio counting Ray's one-time start and the workers' first imports, which are timed apart.
The load average before and after is printed too: on a shared machine, read the ratio with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def make_recipe(folder: Path, n_tasks: int, steps: int) -> Path:
    """The tiny recipe with `n_tasks` tasks (the packaged 4, repeated under new names)."""
    rows = [json.loads(line) for line in (resources.files("lmforget") / "resources" / "tiny" / "tasks.jsonl")
            .read_text().splitlines() if line.strip()]
    names = sorted({r["task"] for r in rows})
    out = []
    for i in range(n_tasks):
        src = names[i % len(names)]
        out += [{**r, "task": f"{src}_{i}"} for r in rows if r["task"] == src]
    (folder / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))
    text = (resources.files("lmforget.recipes") / "tiny.yaml").read_text()
    text = text.replace("path: package:tiny/tasks.jsonl", f"path: {folder / 'tasks.jsonl'}")
    text = text.replace("steps: 4", f"steps: {steps}\n  max_epochs: 1000")
    (folder / "fanout.yaml").write_text(text)
    return folder / "fanout.yaml"


def _per_task(run_dir: Path) -> tuple[float, float]:
    """Mean seconds per task and mean training seconds, from the rows' logs."""
    from lmforget.runs import Run

    run = Run.open(run_dir)
    logs = [run.row_log(t) for t in run.task_names]
    return (sum(g["seconds"] for g in logs) / len(logs), sum(g["train_seconds"] for g in logs) / len(logs))


def _warm(i: int) -> int:
    import time

    from transformers import Trainer  # noqa: F401 - imported lazily by the first fine-tuning

    import lmforget.collect  # noqa: F401 - torch, transformers, accelerate
    import lmforget.finetune  # noqa: F401

    time.sleep(1)  # hold the CPU slot so that each warm-up lands on its own worker
    return i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import ray
    import torch

    from lmforget.collect import collect
    from lmforget.config import ExecutorConfig, load_recipe
    from lmforget.executor import runtime_env

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        tmp = Path(tmp)
        recipe = load_recipe(str(make_recipe(tmp, args.tasks, args.steps)))
        collect(load_recipe("tiny"), tmp / "warm", progress=False)  # tokenizer cache and imports: not timed

        start = time.perf_counter()
        local = collect(recipe, tmp / "local", progress=False)
        t_local = time.perf_counter() - start

        start = time.perf_counter()
        ray.init(address="local", num_cpus=args.workers, include_dashboard=False, runtime_env=runtime_env(),
                 log_to_driver=False, configure_logging=False)
        t_start = time.perf_counter() - start
        start = time.perf_counter()  # each worker process imports torch and transformers once per job
        ray.get([ray.remote(num_cpus=1)(_warm).remote(i) for i in range(args.workers)])
        t_warm = time.perf_counter() - start
        start = time.perf_counter()
        remote = collect(recipe, tmp / "ray", progress=False, executor=ExecutorConfig(kind="ray", cpus_per_task=1))
        t_ray = time.perf_counter() - start
        ray.shutdown()
        per_task = {kind: _per_task(tmp / kind) for kind in ("local", "ray")}
    load_after = os.getloadavg()
    same = float(np.abs(local.Z - remote.Z).max())
    print(f"{args.tasks} tiny tasks x {args.steps} steps + base scoring, {os.cpu_count()} CPUs, "
          f"load average {load_before[0]:.1f} before / {load_after[0]:.1f} after")
    print(f"{'local executor (1 process)':38s} {t_local:7.1f} s   "
          f"(per task: {per_task['local'][0]:.1f} s, of which training {per_task['local'][1]:.1f} s)")
    print(f"{'ray start (local instance)':38s} {t_start:7.1f} s")
    print(f"{'ray worker warm-up (imports)':38s} {t_warm:7.1f} s")
    print(f"{f'ray executor ({args.workers} single-threaded workers)':38s} {t_ray:7.1f} s   "
          f"(per task: {per_task['ray'][0]:.1f} s, of which training {per_task['ray'][1]:.1f} s)")
    print(f"speed-up of ray over local: {t_local / t_ray:.2f}x with warm workers; "
          f"{t_local / (t_ray + t_start + t_warm):.2f}x counting Ray's start and worker imports; "
          f"max |Z_local - Z_ray| = {same:.2e}")


if __name__ == "__main__":
    main()
