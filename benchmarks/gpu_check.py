"""GPU check, meant for one GPU and at most 5 minutes: does lmforget train and score right on CUDA?

    python benchmarks/gpu_check.py [--out DIR] [--skip-smollm2] [--smollm2-on-cpu]

1. a 2-task collect with the tiny model and with SmolLM2-135M-Instruct (packaged tiny data);
2. HF vs vLLM per-example NLL on SmolLM2 (when vLLM is installed);
3. fp32 master weights under bf16 autocast: a bf16 checkpoint, one 2e-6 AdamW step, weights moved;
4. one paged 8-bit AdamW step (when bitsandbytes is installed);
5. a throughput table (scoring tokens/s, training steps/s, seconds per collect task).

Without CUDA it runs in a degraded mode: the CUDA-only parts print why they are skipped, the rest runs
on CPU (so the script itself can be checked anywhere). Exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

RESULTS: list[tuple[str, str, str]] = []  # (check, status, detail)
THROUGHPUT: list[tuple[str, str, str]] = []  # (what, model, number)


def record(check: str, ok: bool | None, detail: str) -> None:
    status = "skipped" if ok is None else ("ok" if ok else "FAILED")
    RESULTS.append((check, status, detail))
    print(f"[{status:7s}] {check}: {detail}", flush=True)


def collect_two_tasks(model: str, out: Path, cuda: bool) -> None:
    from lmforget.collect import collect
    from lmforget.config import load_recipe
    from lmforget.runs import Run

    overrides = [f"model.name={model}", "tasks.tiny.tasks=[add_numbers,opposites]"]
    if model != "tiny:llama":
        overrides += ["finetune.lr=2e-5", "finetune.batch_size=2"]
    start = time.perf_counter()
    m = collect(load_recipe("tiny", overrides), out / model.replace(":", "-"), progress=False)
    secs = time.perf_counter() - start
    run = Run.open(out / model.replace(":", "-"))
    per_task = [run.row_log(t)["seconds"] for t in run.task_names]
    ok = m.shape == (2, 48) and bool((abs(m.Z) > 0).any())
    record(f"2-task collect ({model})", ok, f"Z {m.shape}, mean {float(m.Z.mean()):+.4f}, {secs:.1f} s total "
           f"({'cuda' if cuda else 'cpu'})")
    THROUGHPUT.append(("collect: seconds per task (fine-tune + score 48)", model,
                       f"{sum(per_task) / len(per_task):.1f}"))


def scoring_throughput(model_name: str, device: str) -> None:
    from lmforget.config import ScoreConfig
    from lmforget.data import load_upstream
    from lmforget.data.specs import upstream_spec
    from lmforget.models import load_model
    from lmforget.scoring.upstream import score_upstream

    model, tok = load_model(model_name, device=device)
    up = load_upstream(upstream_spec({"format": "records", "path": "package:tiny/upstream.jsonl"}))
    score_upstream(model, tok, up, ScoreConfig(), progress=False)  # warm-up
    start = time.perf_counter()
    frame = score_upstream(model, tok, up, ScoreConfig(), progress=False)
    secs = time.perf_counter() - start
    THROUGHPUT.append(("scoring: tokens/s (HF, score.dtype auto)", model_name,
                       f"{frame['n_tokens'].sum() / secs:,.0f}"))


def hf_vs_vllm(cuda: bool, out: Path) -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        record("HF vs vLLM per-example NLL", None, "vllm is not installed (pip install 'lmforget[gpu]')")
        return
    if not cuda:
        record("HF vs vLLM per-example NLL", None, "no CUDA device")
        return
    import numpy as np

    from lmforget.data import load_upstream
    from lmforget.data.specs import upstream_spec
    from lmforget.models import load_model
    from lmforget.scoring import make_scorer, results_frame

    model, tok = load_model("smollm2", device="cuda", dtype="bfloat16")
    path = out / "smollm2-hf"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    up = list(load_upstream(upstream_spec({"format": "records", "path": "package:tiny/upstream.jsonl"})))
    hf = results_frame(make_scorer("hf", model, tok, max_length=512).score(up))
    del model
    import torch

    torch.cuda.empty_cache()
    start = time.perf_counter()
    vl = results_frame(make_scorer("vllm", str(path), tok, max_length=512, dtype="bfloat16",
                                   gpu_memory_utilization=0.5).score(up))
    THROUGHPUT.append(("scoring: tokens/s (vLLM incl. engine start)", "smollm2",
                       f"{vl['n_tokens'].sum() / (time.perf_counter() - start):,.0f}"))
    diff = np.abs(hf["nll"].to_numpy() - vl["nll"].to_numpy())
    record("HF vs vLLM per-example NLL", bool(diff.max() < 0.05),
           f"max |diff| {diff.max():.4f}, mean {diff.mean():.4f} nats/token over {len(up)} examples (bf16 both)")


def master_weights(cuda: bool, out: Path, optimizer: str, label: str) -> None:
    import torch

    from lmforget.config import FinetuneConfig
    from lmforget.data.types import TaskExample, TaskSet
    from lmforget.finetune import encode_task, train
    from lmforget.models import load_model

    device = "cuda" if cuda else "cpu"
    model, tok = load_model("tiny:llama", device=device, dtype="bfloat16")
    ckpt = out / "tiny-bf16"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    model, tok = load_model(str(ckpt), device=device, dtype="bfloat16")  # a half-precision checkpoint
    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    task = TaskSet("t", "g", [TaskExample.from_prompt(f"What is {i} plus 1?", str(i + 1)) for i in range(8)], [])
    cfg = FinetuneConfig(lr=2e-6, steps=1, warmup_steps=0, effective_batch=8, batch_size=8, max_length=64,
                         optimizer=optimizer, bf16="auto")
    start = time.perf_counter()
    trained = train(model, tok, encode_task(tok, task, 64), cfg, max_steps=1, progress=False).model
    secs = time.perf_counter() - start
    dtypes = {str(p.dtype) for p in trained.parameters()}
    moved = sum(int((p.detach().float() != before[n]).sum()) for n, p in trained.named_parameters())
    total = sum(p.numel() for p in trained.parameters())
    ok = dtypes == {"torch.float32"} and moved / total > 0.5
    record(label, ok, f"trainable dtype {', '.join(sorted(dtypes))}; {100 * moved / total:.0f}% of weights moved "
           f"by one 2e-6 step; bf16 autocast {'on' if cuda and torch.cuda.is_bf16_supported() else 'off (no CUDA)'}")
    THROUGHPUT.append((f"training: one step ({optimizer})", "tiny:llama", f"{secs:.2f} s"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="Keep the runs here (default: a temporary folder).")
    ap.add_argument("--skip-smollm2", action="store_true", help="Only the tiny model (no SmolLM2 resource needed).")
    ap.add_argument("--smollm2-on-cpu", action="store_true",
                    help="Without CUDA, run the SmolLM2 collect anyway (measured ~8 min on a busy 2-core machine).")
    args = ap.parse_args()
    import torch

    start = time.perf_counter()
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}; " + (f"CUDA device: {torch.cuda.get_device_name(0)}" if cuda else
          "no CUDA device: degraded mode (CUDA-only checks are skipped, the rest runs on CPU)"), flush=True)
    out = args.out or Path(tempfile.mkdtemp(prefix="lmforget-gpu-check-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    smollm2 = not args.skip_smollm2
    if not cuda:
        torch.set_num_threads(1)  # tiny models gain nothing from more threads on a shared CPU
        if smollm2 and not args.smollm2_on_cpu:
            record("SmolLM2 collect and scoring", None, "no CUDA device (on CPU it takes minutes: --smollm2-on-cpu)")
            smollm2 = False
    if smollm2:
        try:
            from lmforget.resources import locate

            locate("smollm2")
        except Exception as exc:  # noqa: BLE001 - report and go on with the tiny model
            record("SmolLM2 resource", None, f"not available ({str(exc).splitlines()[0]})")
            smollm2 = False
    models = ["tiny:llama"] + (["smollm2"] if smollm2 else [])
    for model in models:
        collect_two_tasks(model, out, cuda)
        scoring_throughput(model, "cuda" if cuda else "cpu")
    if smollm2:
        hf_vs_vllm(cuda, out)
    else:
        record("HF vs vLLM per-example NLL", None, "needs SmolLM2 (see above)")
    master_weights(cuda, out, "adamw_torch", "fp32 master weights from a bf16 checkpoint")
    try:
        import bitsandbytes  # noqa: F401

        have_bnb = True
    except ImportError:
        have_bnb = False
    if not have_bnb:
        record("paged 8-bit AdamW step", None, "bitsandbytes is not installed (pip install 'lmforget[gpu]')")
    elif not cuda:
        record("paged 8-bit AdamW step", None, "no CUDA device")
    else:
        master_weights(cuda, out, "paged_adamw_8bit", "paged 8-bit AdamW step")

    print("\n| what | model | number |\n|---|---|---|")
    for row in THROUGHPUT:
        print(f"| {' | '.join(row)} |")
    print(f"\n{sum(s == 'ok' for _, s, _ in RESULTS)} ok, {sum(s == 'FAILED' for _, s, _ in RESULTS)} failed, "
          f"{sum(s == 'skipped' for _, s, _ in RESULTS)} skipped in {time.perf_counter() - start:.0f} s; runs in {out}")
    return 1 if any(s == "FAILED" for _, s, _ in RESULTS) else 0


if __name__ == "__main__":
    sys.exit(main())
