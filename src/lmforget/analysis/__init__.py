"""Analyse a forgetting matrix: low-rank structure, simple models, components, figures, report.

Library use (the CLI `lmforget analyze` is a thin shell over the same calls)::

    from lmforget.matrix import ForgettingMatrix
    from lmforget.analysis import analyze, write_report

    matrix = ForgettingMatrix.load("Z.npz")
    result = analyze(matrix, ranks=10)          # a JSON-ready dict of every number
    write_report(result, "out/")                # out/report.md, out/analysis.json, out/figures/*.png

`analyze(matrix, ranks=10, *, columns=None, seed=0, components=4, top=10, top_share=0.05,
logistic_ranks=5, clip=0.5, source=None)` returns an `Analysis`: a dict with at least
``r2_by_rank`` (list, index 0 = rank 1), ``models`` (``additive``, ``multiplicative``,
``example_only``, ``task_only`` -> R^2), ``r2_by_rank_by_group``, ``r2_by_rank_by_task``,
``singular_values``, ``explained_energy``, ``stats``, ``components`` (top tasks/examples and source
enrichment per component), ``logistic_mf`` (binary matrices only, else None) and ``input`` (shape,
NaN policy, dropped rows/columns, subsample), which also carries the cleaned matrix and the singular
vectors the report's figures are drawn from (`.cleaned`, `.U`, `.V`). `lmforget.analysis.similarity` holds the
task-example similarity measures compared against Z (the paper's Table 2).
"""

from lmforget.analysis.pipeline import Analysis, analyze
from lmforget.analysis.report import analyze_file, write_report

__all__ = ["Analysis", "analyze", "analyze_file", "write_report"]
