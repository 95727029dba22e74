"""`lmforget predict`, `forecast` and `import-reference`: matrix completion for unseen tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer
from rich.table import Table

from lmforget.cli import app, console, csv_list, print_json
from lmforget.errors import LmforgetError


def _parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """`--param mf.rank=8` -> {"mf": {"rank": 8}} (values as `config.parse_value` reads them)."""
    from lmforget.config import parse_key_values

    out: dict[str, dict[str, Any]] = {}
    for key, value in parse_key_values(items, "mf.rank=8"):
        method, dot, name = key.partition(".")
        if not dot or "." in name:
            raise LmforgetError(f"--param {key}=...: expected METHOD.NAME=VALUE, e.g. mf.rank=8")
        out.setdefault(method, {})[name] = value
    return out


@app.command("predict")
def predict_command(
    matrix: Path = typer.Argument(..., help="Forgetting matrix (.npz)."),
    split: str = typer.Option(..., "--split", help="group:NAME | tasks:a,b,c | random:FRACTION | "
                              "flan-in-domain | flan-ood:GROUP | a split .json file."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated completers "
                                          "(default: colmean,additive,knn,mf,lowrank; binary: logistic ones)."),
    observed: int = typer.Option(30, "--observed", "-k", help="Revealed entries per test row."),
    seeds: int = typer.Option(10, "--seeds", help="Number of reveal seeds (0..seeds-1)."),
    train_groups: Optional[str] = typer.Option(None, "--train-groups", help="Comma-separated task groups to train on."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed for random:FRACTION splits."),
    param: list[str] = typer.Option([], "--param", help="METHOD.NAME=VALUE hyperparameter (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    out: Optional[Path] = typer.Option(None, "-o", "--out",
                                       help="Directory for split.json, results.json, predictions.npz."),
) -> None:
    """Evaluate matrix completion on held-out tasks (the paper's Table 3 protocol)."""
    from lmforget.matrix import ForgettingMatrix
    from lmforget.predict.protocol import DEFAULT_METHODS, check_methods, evaluate, make_split, metric_names

    fm = ForgettingMatrix.load(matrix)
    sp = make_split(fm, split, train_groups=csv_list(train_groups) or None, seed=split_seed)
    names = csv_list(methods) or list(DEFAULT_METHODS[fm.kind])
    check_methods(names, fm.kind)
    params = _parse_params(param)
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise LmforgetError(f"--param names method(s) {', '.join(unknown)} that are not in --methods")
    if seeds < 1:
        raise LmforgetError(f"--seeds must be at least 1, got {seeds}")
    if out is not None and out.exists() and not out.is_dir():
        raise LmforgetError(f"-o {out}: exists and is not a directory")
    ev = evaluate(fm, sp, names, observed=observed, seeds=seeds, params=params, keep_predictions=out is not None)
    result = ev.to_dict()
    result["matrix"] = str(matrix)
    if out is not None:
        _save_outputs(out, fm, ev, result)
        result["outputs"] = {k: str(out / f) for k, f in
                             (("split", "split.json"), ("results", "results.json"), ("predictions", "predictions.npz"))}
    table = Table(title=f"{matrix.name}: {len(sp.train)} train / {len(sp.test)} test rows, "
                        f"k={observed}, {seeds} seeds, N={ev.n_columns}"
                        + (f" ({ev.dropped_columns} NaN columns dropped)" if ev.dropped_columns else ""))
    table.add_column("method")
    metrics = metric_names(fm.kind)
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_column("seconds", justify="right")
    for name, res in ev.methods.items():
        cells = [f"{res[m + '_mean']:.4f} ± {res[m + '_std']:.4f}" for m in metrics]
        table.add_row(name, *cells, f"{res['seconds']:.2f}")
    console.print(table)
    fell_back = {name: res["n_fallback"] for name, res in ev.methods.items() if res["n_fallback"]}
    if fell_back:
        console.print("entries predicted from the prior alone (no information about them), all seeds: "
                      + ", ".join(f"{name} {n}" for name, n in fell_back.items()))
    if as_json:
        print_json(result)


def _save_outputs(out: Path, fm, ev, result: dict) -> None:
    from lmforget.atomic import atomic_path, write_json

    out.mkdir(parents=True, exist_ok=True)
    ev.split.save(out / "split.json")
    arrays = {"tasks": np.array(ev.split.test), "examples": fm.examples[ev.columns],
              "revealed_columns": ev.revealed, "seed": np.array(ev.seeds[0])}
    for name, pred in ev.predictions.items():
        arrays[f"pred_{name}"] = pred
    with atomic_path(out / "predictions.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    write_json(out / "results.json", result)


@app.command("forecast")
def forecast_command(
    matrix: Path = typer.Argument(..., help="Forgetting matrix (.npz) of tasks already measured."),
    probe: Path = typer.Option(..., "--probe", help="Probe file id,forgetting (from `lmforget probe`)."),
    output: Path = typer.Option(..., "-o", "--out", help="Output CSV: id, forgetting, observed."),
    method: str = typer.Option("lowrank", "--method", help="Completer to use."),
    train_groups: Optional[str] = typer.Option(None, "--train-groups", help="Comma-separated task groups to use."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Predict a new task's forgetting of every upstream example from a few measured ones."""
    from lmforget.matrix import ForgettingMatrix
    from lmforget.predict.forecast import forecast, write_forecast
    from lmforget.probe import read_probe

    fm = ForgettingMatrix.load(matrix)
    row = read_probe(probe).row(fm.examples.tolist(), source=str(probe))
    res = forecast(fm, row, method=method, train_groups=csv_list(train_groups) or None, seed=seed)
    write_forecast(res, output)
    order = np.argsort(-res.forgetting)[:10]
    n_fallback = int(res.fallback.sum())
    console.print(f"{method}: {int(res.observed.sum())} measured, {res.forgetting.size} predicted "
                  f"from {res.n_train_rows} tasks -> {output}"
                  + (f" ({n_fallback} from the prior alone: no training row measured them)" if n_fallback else ""))
    top = [{"id": str(res.examples[i]), "forgetting": float(res.forgetting[i]), "observed": bool(res.observed[i])}
           for i in order]
    if as_json:
        print_json({"method": method, "output": str(output), "n_observed": int(res.observed.sum()),
                    "n_examples": int(res.forgetting.size), "n_train_rows": res.n_train_rows,
                    "n_fallback": n_fallback, "top": top})


@app.command("import-reference")
def import_reference_command(
    src: Path = typer.Argument(..., help="Directory of the paper's released statistics (stats/)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output directory for .npz matrices and .json splits."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Convert released *-ppl-inc*.npy matrices (+ .meta) and split pickles into our formats."""
    from lmforget.predict.reference_import import import_reference

    written = import_reference(src, out)
    for m in written["matrices"]:
        console.print(f"matrix {m['file']}  {m['shape'][0]} x {m['shape'][1]}  groups: {', '.join(m['groups'])}")
    for s in written["splits"]:
        console.print(f"split  {s['file']}  {s['n_train']} train / {s['n_test']} test  ({s['matrix']})")
    if as_json:
        print_json(written)
