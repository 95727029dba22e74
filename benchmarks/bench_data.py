"""Sampling a gzipped JSON-lines corpus: lmforget's reader vs a plain gzip + json loop vs `datasets` streaming.

Writes a synthetic Dolma-like corpus (shards `cc_en_head-NNNN.json.gz`: gzipped JSON lines with id,
text, source, added, metadata; texts of Zipf-distributed words) into a temporary folder, then has each
method draw the same kind of sample, a uniform random sample of --n documents, in its own subprocess
(so each peak RSS is its own), and prints throughput and peak memory side by side:

    python benchmarks/bench_data.py                 # 4 GB of JSON text (about 1.4 GB gzipped)
    python benchmarks/bench_data.py --gb 0.5        # a quick look
    python benchmarks/bench_data.py --workers 1     # lmforget without the process pool

MB/s is uncompressed JSON text per second of wall time; CPU is user + system seconds of the
process and its workers (a steadier measure than wall time on a busy machine). Peak RSS is the
sampling process's own high-water mark (VmHWM); for lmforget with worker processes the largest
worker's peak is shown as well (each worker holds at most --n documents). Every method keeps the
sampled documents themselves, as a sampler must. The corpus is deleted at the end (--keep to keep it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARD_MB = 256  # uncompressed JSON text per shard


def make_corpus(root: Path, gb: float, seed: int = 0) -> tuple[int, int, int]:
    """Write shards until `gb` GB of JSON text; returns (documents, text bytes, gzipped bytes)."""
    import numpy as np
    import orjson
    from isal import igzip

    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    vocab = ["".join(rng.choice(letters, size=int(k))) for k in rng.integers(2, 11, size=20000)]
    # A pool of distinct documents (Zipf word frequencies, 100-1,500 words), reused with fresh ids.
    pool = []
    for _ in range(6000):
        words = rng.zipf(1.3, size=int(rng.integers(100, 1500))) % len(vocab)
        pool.append(" ".join(vocab[i] for i in words))
    target, total, zbytes, n_docs, shard = int(gb * 1e9), 0, 0, 0, 0
    order = np.random.default_rng(seed + 1)
    while total < target:
        path = root / f"cc_en_head-{shard:04d}.json.gz"
        written = 0
        with igzip.open(path, "wb", compresslevel=1) as fh:
            while written < SHARD_MB * 1e6 and total + written < target:
                lines = []
                for i in order.integers(0, len(pool), size=1000):
                    doc = {"id": f"doc-{n_docs}", "text": pool[i], "source": "common-crawl",
                           "added": "2023-03-01T00:00:00.000Z", "metadata": {"url": f"http://example.com/{n_docs}"}}
                    lines.append(orjson.dumps(doc))
                    n_docs += 1
                blob = b"\n".join(lines) + b"\n"
                fh.write(blob)
                written += len(blob)
        total += written
        zbytes += path.stat().st_size
        shard += 1
    return n_docs, total, zbytes


# --- the methods: each draws a uniform sample of n documents from every shard ----------------------


def reservoir_ids(docs, n: int, seed: int) -> list[str]:
    """Reservoir sampling (Algorithm R) of n documents from a stream; the peers' sampler."""
    rng = random.Random(seed)
    keep: list[dict] = []
    for i, doc in enumerate(docs):
        if i < n:
            keep.append(doc)
        else:
            j = rng.randrange(i + 1)
            if j < n:
                keep[j] = doc
    return [doc["id"] for doc in keep]


def plain(files: list[str], n: int, seed: int) -> list[str]:
    """gzip + json, one line at a time, reservoir sampling of the documents."""
    def docs():
        for f in files:
            with gzip.open(f, "rt", encoding="utf-8") as fh:
                for line in fh:
                    yield json.loads(line)
    return reservoir_ids(docs(), n, seed)


def hf_streaming(files: list[str], n: int, seed: int) -> list[str]:
    """`datasets` streaming over the same files, reservoir sampling."""
    import datasets

    datasets.disable_progress_bars()
    ds = datasets.load_dataset("json", data_files=files, split="train", streaming=True)
    return reservoir_ids(ds, n, seed)


def ours(root: str, n: int, seed: int, workers: int) -> list[str]:
    """lmforget: the dolma adapter, seeded keys per shard, shards in `workers` processes."""
    from lmforget.data import load_upstream

    return load_upstream({"format": "dolma", "path": root, "n": n, "seed": seed}, workers=workers).ids


def child(args) -> None:
    files = sorted(str(p) for p in Path(args.root).glob("*.json.gz"))
    start = time.perf_counter()
    if args.method == "plain":
        ids = plain(files, args.n, args.seed)
    elif args.method == "datasets":
        ids = hf_streaming(files, args.n, args.seed)
    else:
        ids = ours(args.root, args.n, args.seed, args.workers)
    seconds = time.perf_counter() - start
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    print(json.dumps({"seconds": seconds, "cpu": cpu, "n": len(ids), "rss_mb": peak_rss_mb(),
                      "worker_rss_mb": kids.ru_maxrss / 1024}))


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM): unlike ru_maxrss it does not count the parent's
    memory before exec (Linux carries that over), so every method is measured from its own start."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # macOS: bytes there, but a fallback


def run_method(method: str, root: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--root", str(root), "--n", str(args.n),
           "--seed", str(args.seed), "--workers", str(args.workers)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=4.0, help="uncompressed JSON text to generate, in GB (default 4)")
    ap.add_argument("--n", type=int, default=10000, help="documents to sample (default 10,000)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="lmforget's worker processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default=None, help="where to make the temporary corpus folder (default: TMPDIR)")
    ap.add_argument("--methods", default="ours,plain,datasets")
    ap.add_argument("--keep", action="store_true", help="keep the corpus folder")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "make":  # in its own process, so that the parent stays small for the measurements
        print(json.dumps(make_corpus(Path(args.root), args.gb, args.seed)))
        return
    if args.child:
        args.method = args.child
        child(args)
        return

    base = Path(args.dir or tempfile.gettempdir())
    need = args.gb * 1e9 * 0.5 + 1e9  # gzip level 1 keeps roughly a third; keep a margin
    free = shutil.disk_usage(base).free
    if free < need:
        sys.exit(f"bench_data: {base} has {free / 1e9:.1f} GB free, "
                 f"needs about {need / 1e9:.1f} GB for --gb {args.gb}; "
                 "pass a smaller --gb or another --dir")
    root = Path(tempfile.mkdtemp(prefix="lmforget-bench-data-", dir=base))
    try:
        t0 = time.perf_counter()
        made = subprocess.run([sys.executable, __file__, "--child", "make", "--root", str(root), "--gb", str(args.gb),
                               "--seed", str(args.seed)], check=True, capture_output=True, text=True)
        n_docs, text_bytes, gz_bytes = json.loads(made.stdout.strip().splitlines()[-1])
        n_shards = len(list(root.glob("*.json.gz")))
        print(f"corpus: {n_docs:,} documents in {n_shards} shards, {text_bytes / 1e9:.2f} GB of JSON text, "
              f"{gz_bytes / 1e9:.2f} GB gzipped ({time.perf_counter() - t0:.0f} s to write) in {root}")
        print(f"task: a uniform random sample of {args.n:,} documents; cpu count {os.cpu_count()}; "
              f"lmforget workers {args.workers}\n")
        labels = {"ours": f"lmforget (dolma adapter, {args.workers} worker{'s' if args.workers > 1 else ''})",
                  "plain": "plain gzip + json loop", "datasets": "datasets streaming (json)"}
        results = {}
        for method in args.methods.split(","):
            results[method] = r = run_method(method, root, args)
            print(f"  {labels[method]:<42} {text_bytes / 1e6 / r['seconds']:8.1f} MB/s  {r['seconds']:7.1f} s  "
                  f"CPU {r['cpu']:7.1f} s  "
                  f"peak RSS {r['rss_mb']:6.0f} MB" + (f" (largest worker {r['worker_rss_mb']:.0f} MB)"
                                                       if method == "ours" and args.workers > 1 else ""),
                  flush=True)
        if "ours" in results:
            for peer in ("plain", "datasets"):
                if peer in results:
                    print(f"lmforget vs {labels[peer]}: {results[peer]['seconds'] / results['ours']['seconds']:.2f}x "
                          f"wall time, {results[peer]['cpu'] / results['ours']['cpu']:.2f}x CPU time")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
