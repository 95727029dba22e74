"""An interactive report: one self-contained HTML file a researcher opens in a browser.

`write_html_report(result, path, texts)` takes what `lmforget.analysis.analyze` returns (the numbers
plus the cleaned matrix they were computed on; nothing is recomputed) and upstream texts, and writes
a single HTML file with the data inlined (no server, no network at view time, no JavaScript library:
plain JS + canvas/SVG from `html_report.js`). It shows the heatmap in the paper's layout (the same `plots.make_layout`
grouping, sorting and binning as heatmap.png), per-task lists of the most and least forgotten
upstream examples with their text, per-example lists of the tasks that forget them most, the R^2
curve and simple models, the top components, and optionally prediction and replay results.

Scale: only summaries travel. For M x N the file holds the binned heatmap (M x <=1200 floats), per
example its id, source, mean, base NLL and top-k tasks (N x k), per task its top/bottom examples,
and texts only for the examples that some list shows. 85 x 141,816 gives ~11 MB
(benchmarks/bench_report.py).

Every string from data files reaches the page as JSON inside a `<script type="application/json">`
element with `<`, `>` and `&` escaped, and the page inserts it with `textContent` only, so a document
containing `<script>` shows as text.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from lmforget.analysis.pipeline import Analysis
from lmforget.atomic import read_json, write_text
from lmforget.errors import LmforgetError
from lmforget.matrix import ForgettingMatrix

HERE = Path(__file__).parent
TEXT_CHARS = 1200  # per example text kept in the file (the page shows a few lines, expandable)
TASK_TOP = 10  # most / least forgotten examples listed per task
EXAMPLE_TOP = 5  # tasks listed per example (the tasks that forget it most)


def _b64(a: np.ndarray) -> str:
    """Little-endian typed-array bytes as base64: 4-10x smaller and faster to parse than JSON numbers."""
    return base64.b64encode(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def _index_dtype(n: int) -> np.dtype:
    return np.dtype(np.uint8) if n <= 255 else np.dtype(np.uint16) if n <= 65535 else np.dtype(np.uint32)


def auto_clip(Z: np.ndarray) -> float:
    """Colour limit from the data (99th percentile of |Z|): small models forget far below the paper's 0.5."""
    finite = np.abs(Z[np.isfinite(Z)])
    return max(round(float(np.percentile(finite, 99)), 2), 0.01) if finite.size else 0.5


def example_text(ex: Any) -> str:
    """Plain text of an upstream example: raw text, or a chat as 'role: content' lines."""
    if getattr(ex, "text", None) is not None:
        return str(ex.text)
    return "\n".join(f"{m.role}: {m.content}" for m in (ex.messages or ()))


def _t_ci(mean: float | None, sem: float | None, n: int) -> list[float] | None:
    if mean is None or sem is None or n < 2 or not math.isfinite(sem):
        return None
    from scipy import stats

    h = float(stats.t.ppf(0.975, n - 1)) * sem
    return [mean - h, mean + h]


def replay_summary(results: dict[str, Any]) -> dict[str, Any]:
    """The replay study's results.json, reduced to what the page shows, with 95% t-intervals over tasks."""
    n = len(results.get("tasks", []))
    methods = {}
    for name, m in results.get("methods", {}).items():
        vs = m.get("vs_random") or {}
        methods[name] = {"mean": m.get("mean_increase"), "sem": m.get("sem_increase"),
                         "ci95": _t_ci(m.get("mean_increase"), m.get("sem_increase"), n),
                         "reduction_vs_none": m.get("reduction_vs_none"),
                         "reduction_vs_random": m.get("reduction_vs_random"),
                         "t_p": vs.get("t_p"), "t_p_holm": vs.get("t_p_holm"), "wilcoxon_p": vs.get("wilcoxon_p"),
                         "wins": vs.get("wins"), "n": vs.get("n"), "per_task": m.get("per_task", {})}
    pareto = None
    if results.get("pareto"):  # forgetting against task gain (studies that measured task gain)
        par, gain = results["pareto"], results["task_gain"]["methods"]
        pareto = {"n_tasks": len(par["tasks"]), "front": par["front"],
                  "points": [{"method": n, "forgetting": par["forgetting"][n], "gain": par["gain"][n],
                              "gain_sem": gain[n].get("sem_gain"), "kept": gain[n].get("retained_vs_none"),
                              "p_none": (gain[n].get("vs_none") or {}).get("t_p_holm"),
                              "p_random": (gain[n].get("vs_random") or {}).get("t_p_holm")}
                             for n in par["forgetting"]]}
    return {"recipe": results.get("recipe"), "model": results.get("model"), "tasks": results.get("tasks", []),
            "n_heldout": results.get("n_heldout"), "n_pool": results.get("n_pool"), "methods": methods,
            "pareto": pareto}


def predict_summary(results: dict[str, Any]) -> dict[str, Any]:
    """`lmforget predict` results.json reduced to the table: metric mean +- std per method."""
    methods = results.get("methods", {})
    metrics: list[str] = []
    for res in methods.values():
        for key in res:
            if key.endswith("_mean") and key[:-5] not in metrics:
                metrics.append(key[:-5])
    rows = [{"method": name, **{m: [res.get(f"{m}_mean"), res.get(f"{m}_std")] for m in metrics},
             "seconds": res.get("seconds")} for name, res in methods.items()]
    return {"split": (results.get("split") or {}).get("spec"), "n_train": results.get("n_train"),
            "n_test": results.get("n_test"), "observed": results.get("observed"),
            "seeds": len(results.get("seeds") or []) or results.get("seeds"), "n_columns": results.get("n_columns"),
            "metrics": metrics, "rows": rows}


def build_payload(result: Analysis, texts: dict[str, str] | None = None, *,
                  predict: dict[str, Any] | None = None, replay: dict[str, Any] | None = None,
                  task_top: int = TASK_TOP, example_top: int = EXAMPLE_TOP, title: str | None = None) -> dict:
    """Everything the page draws, as one JSON-ready dict (arrays as base64 typed arrays)."""
    from lmforget.analysis import plots

    if not isinstance(result, Analysis):
        raise LmforgetError("the HTML report needs the Analysis that `analyze` returns (it carries the matrix "
                            "analysed); a re-read analysis.json holds only the numbers")
    inp, settings = result["input"], result["settings"]
    c = result.cleaned
    Z = c.Z
    m, n = Z.shape
    layout = plots.make_layout(Z, c.task_groups)
    rows, cols = layout.row_order, layout.col_order
    S = Z[rows][:, cols]  # the page's order: rows grouped, columns by mean forgetting (most forgotten first)
    tasks = [str(t) for t in c.tasks[rows]]
    ids = [str(e) for e in c.examples[cols]]
    src_names, src_idx = np.unique(c.example_sources[cols], return_inverse=True)
    base = None if c.base_nll is None else c.base_nll[cols]

    kt = min(task_top, n // 2 if n >= 2 else 1)
    top, top_v = _largest(S, kt)
    bottom, bottom_v = _largest(-S, kt)
    task_lists = [{"top": [[int(j), float(v)] for j, v in zip(top[i], top_v[i], strict=True)],
                   "bottom": [[int(j), -float(v)] for j, v in zip(bottom[i], bottom_v[i], strict=True)]}
                  for i in range(m)]
    ke = min(example_top, m)
    top_tasks, top_vals = _largest(np.ascontiguousarray(S.T), ke)  # [n, ke]: the tasks that forget it most

    pos = {e: j for j, e in enumerate(ids)}
    row_of = {t: i for i, t in enumerate(tasks)}
    sv = result["singular_values"]
    energy = result["explained_energy"]
    share = np.diff(np.concatenate([[0.0], energy])).tolist()
    comps = []
    for comp in result.get("components") or []:
        k = comp["component"]
        comps.append({
            "component": k, "singular_value": comp["singular_value"], "share": share[k - 1],
            **{end: [[row_of[d["task"]], d["loading"]] for d in comp[end] if d["task"] in row_of]
               for end in ("top_tasks", "bottom_tasks")},
            **{end: [[pos[d["example"]], d["loading"]] for d in comp[end] if d["example"] in pos]
               for end in ("top_examples", "bottom_examples")},
            "enrichment": {end: [d for d in (comp.get("source_enrichment") or {}).get(end, []) if d["z"] > 0][:5]
                           for end in ("top", "bottom")},
        })

    shown = {j for lst in task_lists for end in lst.values() for j, _ in end}
    shown |= {j for comp in comps for end in ("top_examples", "bottom_examples") for j, _ in comp[end]}
    if n <= 5000:
        shown = set(range(n))
    texts = texts or {}
    text_of = {str(j): texts[ids[j]][:TEXT_CHARS] for j in sorted(shown) if ids[j] in texts}

    st = result["stats"]
    by_task = {d["task"]: d for d in st["by_task"]}
    binned = layout.bin(Z).astype(np.float32)
    clip = float(settings["clip"])
    return {
        "title": title or (f"Forgetting matrix {Path(inp['source']).name}" if inp.get("source")
                           else "Forgetting matrix"),
        "source": inp.get("source"), "kind": inp["kind"], "shape": inp["shape"], "analysed_shape": [m, n],
        "model": (inp.get("meta") or {}).get("model"),
        "clip": clip, "nan_policy": inp["nan_policy"], "columns_dropped_nan": inp["columns_dropped_nan"],
        "rows_dropped": inp["rows_dropped_all_nan"],
        "stats": {"mean": st["mean"], "share_positive": st["share_positive"], "std": st["std"]},
        "tasks": tasks, "groups": [str(g) for g in c.task_groups[rows]],
        "group_bounds": [[g, a, b] for g, (a, b) in zip(layout.group_names, layout.group_bounds, strict=True)],
        "task_mean": [by_task[t]["mean"] for t in tasks],
        "task_share": [by_task[t]["share_positive"] for t in tasks],
        "task_r2": [(result.get("r2_by_rank_by_task") or {}).get(t) for t in tasks],
        "bins": {"starts": layout.bin_starts.tolist(), "count": layout.n_bins},
        "heat": _b64(binned),
        "ex": {"ids": ids, "sources": [str(s) for s in src_names],
               "source": _b64(src_idx.astype(_index_dtype(len(src_names)))),
               "source_type": _index_dtype(len(src_names)).name,
               "mean": _b64(S.mean(axis=0, dtype=np.float64).astype(np.float32)),
               "base": None if base is None else _b64(base),
               "k": ke, "top_task": _b64(top_tasks.astype(_index_dtype(m))), "top_task_type": _index_dtype(m).name,
               "top_val": _b64(top_vals.astype(np.float32))},
        "texts": text_of, "n_texts_total": len(texts),
        "task_lists": task_lists,
        "r2": result["r2_by_rank"], "r2_groups": {g: v for g, v in result["r2_by_rank_by_group"].items() if v},
        "models": result["models"], "singular_values": sv[:50], "energy": energy[:50],
        "components": comps,
        "logistic": (result.get("logistic_mf") or {}).get("by_rank"),
        "predict": predict_summary(predict) if predict else None,
        "replay": replay_summary(replay) if replay else None,
    }


def _largest(A: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the column indices of the k largest values, largest first, and those values."""
    idx = np.argpartition(-A, k - 1, axis=1)[:, :k] if k < A.shape[1] else np.tile(np.arange(A.shape[1]), (len(A), 1))
    vals = np.take_along_axis(A, idx, axis=1)
    order = np.lexsort((idx, -vals), axis=1)  # by value, ties by index: deterministic
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _script_json(obj: Any) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>' or '&' survives raw."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_html(payload: dict[str, Any]) -> str:
    """The page: static HTML shell + inlined CSS + data + inlined JS."""
    css = (HERE / "html_report.css").read_text(encoding="utf-8")
    js = (HERE / "html_report.js").read_text(encoding="utf-8")
    title = (payload["title"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\n"
        f"<title>{title} · lmforget</title>\n<style>\n{css}</style>\n</head>\n<body>\n"
        "<noscript>This report needs JavaScript.</noscript>\n<div id=\"app\"></div>\n"
        f"<script type=\"application/json\" id=\"lmforget-data\">{_script_json(payload)}</script>\n"
        f"<script>\n{js}</script>\n</body>\n</html>\n"
    )


def write_html_report(result: Analysis, path: str | Path, texts: dict[str, str] | None = None,
                      **options: Any) -> Path:
    """Write the self-contained interactive report of `analyze(...)`'s result to `path` (atomically).

    `texts` maps upstream ids to their text (see `texts_of`); options go to `build_payload`."""
    out = Path(path)
    if out.exists() and out.is_dir():
        raise LmforgetError(f"{out}: is a directory; give the report's file name, e.g. -o report.html")
    write_text(out, render_html(build_payload(result, texts, **options)))
    return out


def texts_of(examples: Iterable[Any]) -> dict[str, str]:
    """id -> plain text for upstream examples (UpstreamExample or anything with id/text/messages)."""
    return {str(ex.id): example_text(ex) for ex in examples}


# ------------------------------------------------------------------------------------ inputs
def _read_json(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise LmforgetError(f"{path}: expected a JSON object")
    return data


def is_predict_results(d: dict) -> bool:
    """A `predict -o DIR` results.json (a prediction's folder is not a work directory: its contents say)."""
    return isinstance(d.get("methods"), dict) and "split" in d and "observed" in d


def is_study_folder(folder: Path) -> bool:
    """Whether `folder` is a replay study's work directory (its manifest says so)."""
    from lmforget.workdir import kind_of, read_manifest

    return kind_of(read_manifest(folder) or {}) == "replay-study"


def load_results(path: str | Path, kind: str) -> dict[str, Any]:
    """A `predict -o DIR` or `replay -o DIR` results.json (the folder or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.exists():
        raise LmforgetError(f"--{kind} {path}: no results.json there")
    data = _read_json(p)
    ok = is_predict_results(data) if kind == "predict" else is_study_folder(p.parent)
    if not ok:
        raise LmforgetError(f"--{kind} {p}: not the results.json of `lmforget {kind}`")
    return data


def find_results(run_dir: Path) -> tuple[dict | None, dict | None]:
    """Prediction and replay results.json found one or two folders below a run directory, if any."""
    predict = replay = None
    for p in sorted(run_dir.glob("*/results.json")) + sorted(run_dir.glob("*/*/results.json")):
        try:
            data = _read_json(p)
            study = is_study_folder(p.parent)
        except LmforgetError:
            continue
        if replay is None and study:
            replay = data
        elif predict is None and not study and is_predict_results(data):
            predict = data
    return predict, replay


def report_from_path(path: str | Path, out: str | Path, *, upstream: str | None = None,
                     predict: str | Path | None = None, replay: str | Path | None = None,
                     ranks: int = 10, clip: float | None = None, columns: int | None = None,
                     seed: int = 0) -> dict[str, Any]:
    """`lmforget report`: a run directory, or a matrix file plus optional upstream data -> report.html."""
    from lmforget.analysis.pipeline import analyze

    p = Path(path)
    out = Path(out)
    if out.exists() and out.is_dir():
        raise LmforgetError(f"-o {out}: is a directory; give the report's file name, e.g. -o report.html")
    found_predict = found_replay = None
    warning = origin = None
    if p.is_dir():
        from lmforget.runs import Run

        study = p if is_study_folder(p) else None
        run_dir = study_run_dir(p) if study is not None else p
        run = Run.open(run_dir)
        if upstream is None:
            examples, why = run.readable_upstream()
            if examples is None:
                examples = []
                base = run.base_scores()
                n = 0 if base is None else len(base)
                warning = (f"{run_dir}: data/ is absent and its example texts were not rebuilt ({why}); "
                           f"the report shows {n:,} example ids without text")
            origin = run.upstream_origin
        else:
            examples = _load_upstream(upstream)
        mpath = run_dir / "matrix.npz"
        matrix = ForgettingMatrix.load(mpath) if mpath.exists() else run.matrix()
        found_predict, found_replay = find_results(run_dir)
        if study is not None and (study / "results.json").is_file():
            found_replay = load_results(study, "replay")
    elif p.suffix == ".npz":
        matrix = ForgettingMatrix.load(p)
        examples = _load_upstream(upstream) if upstream else []
    else:
        raise LmforgetError(f"{p}: give a run directory or a matrix .npz file")
    pred = load_results(predict, "predict") if predict else found_predict
    rep = load_results(replay, "replay") if replay else found_replay
    if clip is None:
        clip = auto_clip(matrix.Z) if matrix.kind != "binary" else 0.5
    result = analyze(matrix, ranks=min(ranks, matrix.shape[0]), columns=columns, seed=seed, clip=clip,
                     source=str(p))
    texts = texts_of(examples)
    write_html_report(result, out, texts, predict=pred, replay=rep)
    matched = len(set(texts) & set(matrix.examples.tolist()))
    return {"out": str(out), "bytes": out.stat().st_size, "shape": list(matrix.shape),
            "texts": matched, "predict": pred is not None, "replay": rep is not None,
            "texts_from": origin, "warning": warning}


def study_run_dir(study: Path) -> Path:
    """The run directory a replay study was made from: its manifest's `run` path (as given when the
    study was made, so tried from here and from the study's parent folders), checked by fingerprints."""
    from lmforget.runs import Run
    from lmforget.workdir import WorkDir

    wd = WorkDir.open(study, "replay-study")
    manifest = wd.manifest
    given = Path(str(manifest.get("run") or ""))
    if not str(given) or str(given) == ".":
        raise LmforgetError(f"{study}: the study's manifest names no run directory")
    here = study.resolve()
    tries = [given] if given.is_absolute() else [given, *(a / given for a in here.parents), here.parent / given.name]
    want = wd.identity.get("run_fingerprints", {})
    for cand in tries:
        if (cand / "manifest.json").is_file():
            run = Run.open(cand)
            if not want or run.manifest.get("fingerprints") == want:
                return cand
    raise LmforgetError(f"{study}: its run directory {given} is not there (or holds another run); give the "
                        "run directory to `lmforget report` and the study with --replay")


def _load_upstream(spec: str):
    from lmforget.data import load_upstream_arg

    return load_upstream_arg(spec)
