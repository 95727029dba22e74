"""Interactive HTML report at the paper's scale: 85 tasks x 141,816 upstream examples (OLMo-7B's matrix).

Builds a synthetic low-rank matrix with fake texts (66 FLAN + 11 Tulu + 8 Dolly tasks, several sources),
writes the report, and prints its size and build time next to its peer measured in the same run: the
Markdown + PNG report of the same analysis (`write_report`). When chromium and playwright are present
it also opens the file in headless Chromium and prints the time to interactive (the page's own
`performance.now()` when the heatmap, panels and charts are drawn) next to the time Chromium takes
to open a blank file. Targets (issue 11): < 25 MB, interactive < 3 s.

    python benchmarks/bench_report.py [--tasks 85] [--examples 141816] [--keep report.html]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lmforget.analysis import analyze, write_report
from lmforget.analysis.html_report import write_html_report
from lmforget.matrix import ForgettingMatrix

WORDS = ("the model forgets rare facts about rivers mountains proteins treaties compilers poems chess "
         "markets volcanoes saints algorithms orchestras").split()


def synthetic(m: int, n: int, seed: int = 0) -> tuple[ForgettingMatrix, dict[str, str]]:
    rng = np.random.default_rng(seed)
    n_flan, n_tulu = round(m * 66 / 85), round(m * 11 / 85)
    groups = ["flan"] * n_flan + ["tulu"] * n_tulu + ["dolly"] * (m - n_flan - n_tulu)
    U = rng.standard_normal((m, 5)) * [1.0, 0.5, 0.3, 0.2, 0.1]
    V = rng.standard_normal((5, n))
    Z = (0.05 * (U @ V) + 0.02 + 0.03 * rng.standard_normal((m, n))).astype(np.float32)
    sources = rng.choice(["cc", "c4", "reddit", "peS2o", "stack", "books", "wiki"], n, p=[.4, .2, .1, .1, .1, .05, .05])
    ids = np.array([f"dolma-{j:07d}" for j in range(n)])
    fm = ForgettingMatrix(Z=Z, tasks=[f"{g}/task_{i:03d}" for i, g in enumerate(groups)], task_groups=groups,
                          examples=ids, example_sources=sources, base_nll=rng.uniform(1.5, 4.0, n).astype(np.float32),
                          meta={"model": "synthetic"})
    words = np.array(WORDS)
    lengths = rng.integers(40, 300, n)
    pool = words[rng.integers(0, len(words), 300)]
    texts = {str(ids[j]): " ".join(pool[(j % 37):(j % 37) + lengths[j]]) for j in range(n)}
    return fm, texts


def time_to_interactive(path: Path) -> tuple[float, float] | None:
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        print("chromium not found: time to interactive not measured (apt-get install chromium)")
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright not installed: time to interactive not measured (pip install playwright)")
        return None
    blank = path.with_name("blank.html")
    blank.write_text("<!DOCTYPE html><title>blank</title><p>blank</p>", encoding="utf-8")
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(blank.as_uri())
        blank_ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(path.as_uri(), timeout=120_000)
        page.wait_for_function("window.__lmforgetReady !== undefined", timeout=120_000)
        ready_ms = page.evaluate("window.__lmforgetReady")
        browser.close()
    if errors:
        print("JavaScript errors:", errors)
    return ready_ms / 1000, blank_ms / 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=85)
    ap.add_argument("--examples", type=int, default=141_816)
    ap.add_argument("--keep", type=Path, default=None, help="Also copy the report here.")
    a = ap.parse_args()

    t0 = time.perf_counter()
    fm, texts = synthetic(a.tasks, a.examples)
    print(f"synthetic {a.tasks} x {a.examples:,} matrix and {len(texts):,} texts: {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    result = analyze(fm, ranks=10, clip=0.2)
    t_analyze = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        write_report(result, tmp / "md")
        t_md = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = write_html_report(result, tmp / "report.html", texts)
        t_html = time.perf_counter() - t0
        size = out.stat().st_size
        print(f"analyze (shared by both reports): {t_analyze:.2f} s")
        print(f"HTML report: {size / 1e6:.1f} MB (target < 25 MB), written in {t_html:.2f} s")
        print(f"peer, Markdown + PNG report of the same analysis: {t_md:.2f} s "
              f"(ratio HTML / peer {t_html / t_md:.2f})")
        tti = time_to_interactive(out)
        if tti:
            ready, blank = tti
            print(f"headless Chromium: interactive {ready:.2f} s after navigation (target < 3 s); "
                  f"a blank page loads in {blank:.3f} s")
        if a.keep:
            shutil.copyfile(out, a.keep)
    ok = size < 25e6 and (tti is None or tti[0] < 3.0)
    print("OK" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
