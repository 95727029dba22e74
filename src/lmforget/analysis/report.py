"""Write an analysis result as a report a person can read: report.md + figures/*.png + analysis.json.

`write_report(result, out_dir)` takes what `lmforget.analysis.analyze` returns: the numbers, plus
the cleaned matrix and singular vectors the figures are drawn from (a plain dict, e.g. a re-read
analysis.json, gives the report without figures). Nothing is re-cleaned or recomputed here. The
report is GitHub-flavoured markdown with figures embedded by relative path, so the folder can be
committed or zipped as is. Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lmforget.analysis.pipeline import Analysis, analyze
from lmforget.atomic import write_json, write_text
from lmforget.errors import LmforgetError
from lmforget.matrix import ForgettingMatrix

FIGURES = "figures"


def write_report(result: dict[str, Any], out_dir: str | Path) -> Path:
    """Write figures (when `result` is an `Analysis`), analysis.json and report.md into out_dir; return report.md."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LmforgetError(f"{out}: exists and is not a directory")
    figures = _draw_figures(result, out) if isinstance(result, Analysis) else {}
    write_json(out / "analysis.json", result)
    path = out / "report.md"
    write_text(path, render_markdown(result, figures))
    return path


def analyze_file(path: str | Path, out_dir: str | Path, **options: Any) -> Analysis:
    """Load a matrix file, analyse it, write report.md + analysis.json + figures into out_dir."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LmforgetError(f"{out}: exists and is not a directory; choose another --out")
    matrix = ForgettingMatrix.load(path)
    result = analyze(matrix, source=str(path), **options)
    write_report(result, out)
    return result


# ----------------------------------------------------------------------------------------- figures
def _draw_figures(result: Analysis, out: Path) -> dict[str, str]:
    from lmforget.analysis import plots

    inp, settings = result["input"], result["settings"]
    c = result.cleaned
    binary = inp["kind"] == "binary"
    layout = plots.make_layout(c.Z, c.task_groups)
    name = Path(inp["source"]).name if inp.get("source") else None
    shape = f"{c.Z.shape[0]} tasks × {c.Z.shape[1]:,} examples"
    fig_dir = out / FIGURES
    done: dict[str, str] = {}

    plots.forgetting_heatmap(fig_dir / "heatmap.png", c.Z, c.tasks, layout, settings["clip"], binary,
                             f"Forgetting matrix{f' {name}' if name else ''} ({shape})")
    done["heatmap"] = f"{FIGURES}/heatmap.png"
    plots.r2_curves(fig_dir / "r2_by_rank.png", result["r2_by_rank"], result["r2_by_rank_by_group"],
                    result["models"], f"How low-rank is forgetting? ({shape})")
    done["r2"] = f"{FIGURES}/r2_by_rank.png"
    sv = np.asarray(result["singular_values"], dtype=np.float64)
    energy = np.asarray(result["explained_energy"], dtype=np.float64)
    plots.singular_value_plot(fig_dir / "singular_values.png", sv, energy, f"Singular values of Z ({shape})")
    done["singular_values"] = f"{FIGURES}/singular_values.png"

    comps = result["components"]
    if comps:
        s = sv[: len(comps)]
        share = np.diff(np.concatenate([[0.0], energy]))[: len(comps)]
        plots.component_heatmaps(fig_dir / "components.png", c.Z, c.tasks, layout, result.U, result.V, s, share)
        done["components"] = f"{FIGURES}/components.png"
    if result.get("logistic_mf"):
        plots.logistic_f1_plot(fig_dir / "logistic_f1.png", result["logistic_mf"]["by_rank"],
                               "Logistic matrix factorisation of the binary matrix")
        done["logistic"] = f"{FIGURES}/logistic_f1.png"
    return done


# ---------------------------------------------------------------------------------------- markdown
def _cell(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.{digits}e}"
        return f"{x:.{digits}f}"
    return str(x).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _p(x: float) -> str:
    return f"{x:.2e}" if x < 1e-3 else f"{x:.3f}"


def render_markdown(result: dict[str, Any], figures: dict[str, str]) -> str:
    """The report text: summary, figures, and the tables behind them."""
    inp, st, settings = result["input"], result["stats"], result["settings"]
    m, n = inp["analysed_shape"]
    k = settings["ranks"]
    r2 = result["r2_by_rank"]
    md: list[str] = ["# Forgetting matrix analysis", ""]
    src = inp.get("source") or "in-memory matrix"
    md += [f"Input: `{src}` ({inp['kind']}), stored shape {inp['shape'][0]} × {inp['shape'][1]:,}; "
           f"analysed {m} tasks × {n:,} upstream examples.", ""]
    notes = [f"NaN policy: {inp['nan_policy']}. Columns dropped for NaN: {inp['columns_dropped_nan']:,}."]
    if inp["rows_dropped_all_nan"]:
        notes.append(f"Rows dropped (entirely NaN): {', '.join(inp['rows_dropped_all_nan'])}.")
    if inp.get("subsample"):
        notes.append(f"Columns subsampled: {n:,} of {inp['columns_available']:,} (seed {inp['subsample']['seed']}).")
    md += [" ".join(notes), ""]

    headline = f"**Rank-1 R² = {_cell(r2[0])}**"
    if len(r2) >= 3:
        headline += f", rank-3 R² = {_cell(r2[2])}"
    if len(r2) >= 5:
        headline += f", rank-5 R² = {_cell(r2[4])}"
    md += [headline + f"; additive model R² = {_cell(result['models']['additive'])}. "
           f"Mean forgetting {_cell(st['mean'], 4)}, {100 * st['share_positive']:.1f}% of entries > 0.", ""]

    if "heatmap" in figures:
        md += ["## The forgetting matrix", "", f"![Forgetting heatmap]({figures['heatmap']})", ""]

    md += ["## How low-rank is it?", ""]
    if "r2" in figures:
        md += [f"![R² by rank]({figures['r2']})", ""]
    groups = [g for g, v in result["r2_by_rank_by_group"].items() if v is not None]
    header = ["rank k", "R² (all)"] + [f"R² ({g})" for g in groups] + ["share of ‖Z‖²"]
    rows = [[i + 1, r2[i]] + [result["r2_by_rank_by_group"][g][i] for g in groups]
            + [result["explained_energy"][i]] for i in range(k)]
    md += [_table(header, rows), ""]
    md += ["R² = 1 − mean((Z − Z_k)²) / mean((Z − mean Z)²), Z_k the rank-k truncated SVD of the uncentred Z. "
           "Group columns score the same global approximation on that group's rows against the group's "
           "own variance.", ""]
    labels = {"additive": "additive μ + aᵢ + bⱼ", "multiplicative": "multiplicative (rank-1, no bias)",
              "example_only": "example-only (column means)", "task_only": "task-only (row means)"}
    md += ["### Simple models on the same matrix", "",
           _table(["model", "R²"], [[labels[key], v] for key, v in result["models"].items()]), ""]

    if result.get("logistic_mf"):
        lg = result["logistic_mf"]
        md += ["### Logistic matrix factorisation (binary matrix)", ""]
        if "logistic" in figures:
            md += [f"![Logistic MF F1]({figures['logistic']})", ""]
        md += [_table(["rank", "F1", "precision", "recall", "accuracy"],
                      [[d["rank"], d["f1"], d["precision"], d["recall"], d["accuracy"]] for d in lg["by_rank"]]),
               "", f"σ(W H), no bias, L-BFGS (≤ {lg['max_iter']} iterations), L2 {lg['l2']:g}, seed {lg['seed']}; "
               "forgotten predicted where σ > 0.5.", ""]

    md += ["## Singular values", ""]
    if "singular_values" in figures:
        md += [f"![Singular values]({figures['singular_values']})", ""]
    sv = result["singular_values"]
    md += [_table(["k", "σₖ", "cumulative share of ‖Z‖²"],
                  [[i + 1, sv[i], result["explained_energy"][i]] for i in range(min(k, len(sv)))]), ""]

    md += ["## Basic statistics", "",
           _table(["", "value"], [["mean", st["mean"]], ["std", st["std"]], ["share > 0", st["share_positive"]],
                                  ["min", st["min"]], ["median", st["quantiles"]["0.5"]], ["max", st["max"]]]), "",
           "### By task group", "",
           _table(["group", "tasks", "mean", "share > 0"],
                  [[g, d["n_tasks"], d["mean"], d["share_positive"]] for g, d in st["by_group"].items()]), ""]
    if len(st["by_source"]) > 1:
        md += ["### By upstream source", "",
               _table(["source", "examples", "mean", "share > 0"],
                      [[s, d["n"], d["mean"], d["share_positive"]] for s, d in
                       sorted(st["by_source"].items(), key=lambda kv: -kv[1]["n"])]), ""]
    tasks = sorted(st["by_task"], key=lambda d: -d["mean"])
    show = min(10, len(tasks))
    md += [f"### Tasks causing the most and least forgetting (top and bottom {show})", "",
           _table(["task", "group", "mean", "share > 0"],
                  [[d["task"], d["group"], d["mean"], d["share_positive"]] for d in tasks[:show]]
                  + ([["…", "", None, None]] if len(tasks) > 2 * show else [])
                  + [[d["task"], d["group"], d["mean"], d["share_positive"]]
                     for d in tasks[max(show, len(tasks) - show):]]), ""]

    if result["components"]:
        md += ["## Components", ""]
        if "components" in figures:
            md += [f"![Top components]({figures['components']})", ""]
        for comp in result["components"]:
            md += _component_section(comp)
    return "\n".join(md).rstrip() + "\n"


def _component_section(comp: dict[str, Any]) -> list[str]:
    i = comp["component"]
    md = [f"### Component {i} (σ = {_cell(comp['singular_value'])})", ""]
    tt = comp["top_tasks"]
    bt = comp["bottom_tasks"]
    md += ["Tasks with the largest / smallest loadings:", "",
           _table(["largest", "loading", "smallest", "loading"],
                  [[a["task"], a["loading"], b["task"], b["loading"]] for a, b in zip(tt, bt, strict=True)]), ""]
    te, be = comp["top_examples"], comp["bottom_examples"]
    md += ["Upstream examples with the largest / smallest loadings:", "",
           _table(["largest", "source", "loading", "smallest", "source", "loading"],
                  [[a["example"], a["source"], a["loading"], b["example"], b["source"], b["loading"]]
                   for a, b in zip(te, be, strict=True)]), ""]
    enr = comp.get("source_enrichment")
    if enr:
        for end in ("top", "bottom"):
            rows = [d for d in enr[end] if d["z"] > 0][:8]
            if not rows:
                continue
            md += [f"Sources over-represented among the {enr['n_extreme']} {'largest' if end == 'top' else 'smallest'}"
                   "-loading examples (one-sided two-proportion z-test):", "",
                   _table(["source", "share in extreme", "share in rest", "z", "p", "p (Bonferroni)"],
                          [[d["source"], d["share_top"], d["share_rest"], d["z"], _p(d["p"]), _p(d["p_bonferroni"])]
                           for d in rows]), ""]
    return md
