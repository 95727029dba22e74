"""The evaluation protocol of docs/protocol.md section 5: row splits, revealed columns, pooled metrics.

A split names training and test rows (tasks) and is saved as JSON. For each seed, k columns are
drawn without replacement and revealed for every test row; each completer, fitted once on the
training rows, predicts the test rows from those entries; metrics pool the unrevealed entries
of all test rows; mean and (population) std over seeds are reported.
NaN policy: `ForgettingMatrix.complete` over the split's rows (columns with a NaN are dropped and counted;
a split row never measured is refused, as dropping it would change the split).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from lmforget.atomic import read_json
from lmforget.errors import LmforgetError
from lmforget.matrix import ForgettingMatrix
from lmforget.predict.base import get_completer, list_completers

#: The paper's 20 in-domain FLAN test tasks; the other 46 FLAN rows train.
FLAN_IN_DOMAIN_TEST = (
    "arc_easy", "yelp_polarity_reviews", "e2e_nlg", "cb", "wmt16_ruen", "coqa", "qnli", "glue_qqp",
    "natural_questions", "fix_punct", "wsc", "trivia_qa", "math_dataset", "openbookqa",
    "opinion_abstracts_idebate", "wmt16_tren", "definite_pronoun_resolution", "arc_challenge", "wic", "trec",
)
DEFAULT_METHODS = {"logppl": ("colmean", "additive", "knn", "mf", "lowrank"),
                   "binary": ("colmean", "logistic-additive", "logistic-mf")}
TOP_FRACTION = 0.01


# ------------------------------------------------------------------ splits
@dataclass
class Split:
    """Which rows (task names) train the completer and which are predicted."""

    train: list[str]
    test: list[str]
    spec: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "train": list(self.train), "test": list(self.test)}

    def save(self, path: str | Path) -> None:
        from lmforget.atomic import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        path = Path(path)
        data = read_json(path, "split JSON file")
        if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("train", "test")):
            raise LmforgetError(f"{path}: a split file needs lists 'train' and 'test' of task names")
        return cls(train=[str(t) for t in data["train"]], test=[str(t) for t in data["test"]],
                   spec=str(data.get("spec", f"file:{path}")))


def _norm(name: str) -> str:
    """Task name as compared by split specs: last path part, no ':version' suffix, lower case."""
    return name.rsplit("/", 1)[-1].split(":", 1)[0].strip().lower()


def _resolve(names: list[str], tasks: list[str], what: str) -> list[str]:
    exact = set(tasks)
    by_norm: dict[str, list[str]] = {}
    for t in tasks:
        by_norm.setdefault(_norm(t), []).append(t)
    out, missing = [], []
    for name in names:
        if name in exact:
            out.append(name)
        elif len(by_norm.get(_norm(name), [])) == 1:
            out.append(by_norm[_norm(name)][0])
        else:
            missing.append(name)
    if missing:
        raise LmforgetError(f"{what}: task(s) {', '.join(missing[:6])}"
                            f"{' ...' if len(missing) > 6 else ''} are not rows of the matrix")
    return out


def _groups_rows(matrix: ForgettingMatrix, groups: list[str], what: str) -> list[str]:
    known = matrix.groups
    bad = [g for g in groups if g not in known]
    if bad:
        raise LmforgetError(f"{what}: unknown task group(s) {', '.join(bad)}; the matrix has {', '.join(known)}")
    return [t for t, g in zip(matrix.tasks.tolist(), matrix.task_groups.tolist(), strict=True) if g in groups]


def make_split(matrix: ForgettingMatrix, spec: str, train_groups: list[str] | None = None,
               seed: int = 0) -> Split:
    """Build a row split from a spec string.

    group:NAME      test = every row of group NAME
    tasks:a,b,c     test = the named rows
    random:FRAC     test = a seeded random fraction of the rows
    flan-in-domain  test = the paper's 20 FLAN tasks, train = the other FLAN rows
    flan-ood:NAME   test = every row of group NAME, train = the paper's 46 FLAN training rows
    PATH.json       a split file written before (by `predict -o` or `import-reference`)
    Training rows: `train_groups` if given, else every row not in the test set.
    """
    tasks = matrix.tasks.tolist()
    spec = spec.strip()
    kind, _, arg = spec.partition(":")
    train: list[str] | None = None
    if spec.endswith(".json"):
        split = Split.load(spec)
        test = _resolve(split.test, tasks, f"split {spec} (test)")
        train = _resolve(split.train, tasks, f"split {spec} (train)")
        return _checked(Split(train=train, test=test, spec=split.spec))
    if kind == "group" and arg:
        test = _groups_rows(matrix, [arg], f"--split {spec}")
    elif kind == "tasks" and arg:
        test = _resolve([a for a in arg.split(",") if a.strip()], tasks, f"--split {spec}")
    elif kind == "random" and arg:
        try:
            frac = float(arg)
        except ValueError:
            raise LmforgetError(f"--split {spec}: FRACTION must be a number in (0, 1)") from None
        if not 0 < frac < 1:
            raise LmforgetError(f"--split {spec}: FRACTION must be in (0, 1)")
        n_test = min(len(tasks) - 1, max(1, round(frac * len(tasks))))
        pick = np.sort(np.random.default_rng(seed).choice(len(tasks), n_test, replace=False))
        test = [tasks[i] for i in pick]
    elif spec in ("flan-in-domain", "flan-id"):
        flan = _flan_rows(matrix, spec)
        test = _resolve(list(FLAN_IN_DOMAIN_TEST), flan, f"--split {spec}")
        train = [t for t in flan if t not in set(test)]
    elif kind == "flan-ood" and arg:
        flan = _flan_rows(matrix, spec)
        in_domain = set(_resolve(list(FLAN_IN_DOMAIN_TEST), flan, f"--split {spec}"))
        train = [t for t in flan if t not in in_domain]
        test = _groups_rows(matrix, [arg], f"--split {spec}")
    else:
        raise LmforgetError(f"--split {spec!r}: expected group:NAME, tasks:a,b,c, random:FRACTION, "
                            "flan-in-domain, flan-ood:GROUP or a split .json file")
    if train_groups:
        train = [t for t in _groups_rows(matrix, train_groups, "--train-groups") if t not in set(test)]
    elif train is None:
        train = [t for t in tasks if t not in set(test)]
    return _checked(Split(train=train, test=test, spec=spec))


def _flan_rows(matrix: ForgettingMatrix, spec: str) -> list[str]:
    if "flan" not in matrix.groups:
        raise LmforgetError(f"--split {spec}: the matrix has no task group 'flan' "
                            f"(groups: {', '.join(matrix.groups)})")
    return _groups_rows(matrix, ["flan"], spec)


def _checked(split: Split) -> Split:
    if not split.test:
        raise LmforgetError(f"split {split.spec!r} has no test rows")
    if not split.train:
        raise LmforgetError(f"split {split.spec!r} has no training rows")
    overlap = set(split.train) & set(split.test)
    if overlap:
        raise LmforgetError(f"split {split.spec!r}: task(s) {', '.join(sorted(overlap)[:5])} "
                            "are in both train and test")
    return split


# ------------------------------------------------------------------ reveal
def reveal_columns(candidates: int | np.ndarray, k: int, seed: int) -> np.ndarray:
    """k distinct columns (sorted) drawn from `candidates` (a column count, or the column indices that may
    be revealed) with `default_rng(seed)`: the same for every test row of this seed. The reference
    drew with replacement; revealing a column twice would reveal fewer than k entries.
    """
    pool = np.arange(candidates) if np.ndim(candidates) == 0 else np.asarray(candidates)
    if k > len(pool):
        raise LmforgetError(f"{k} revealed entries asked for but only {len(pool)} columns can be revealed")
    return np.sort(np.random.default_rng(seed).choice(pool, size=k, replace=False))


# ----------------------------------------------------------------- metrics
def score(truth: np.ndarray, pred: np.ndarray, kind: str, truth_ranks: np.ndarray | None = None,
          truth_top: np.ndarray | None = None) -> dict[str, float]:
    """Metrics over the given (unrevealed) entries of the test rows, pooled across rows.

    `truth_ranks` (row-wise ranks) and `truth_top` (top-1% mask) of `truth` may be passed in to
    share them across methods.
    """
    out: dict[str, float] = {}
    if kind == "binary":
        y = truth > 0.5
        yhat = pred > 0.5
        tp = float(np.sum(y & yhat))
        prec = tp / max(float(yhat.sum()), 1.0)
        rec = tp / max(float(y.sum()), 1.0)
        out.update(f1=2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0,
                   precision=prec, recall=rec, auroc=_auroc(y.ravel(), pred.ravel()))
        top_truth = y
    else:
        out["rmse"] = float(np.sqrt(np.mean((pred - truth) ** 2)))
        out["spearman"] = _mean_row_spearman(row_ranks(truth) if truth_ranks is None else truth_ranks,
                                             row_ranks(pred))
        top_truth = _top_mask(truth) if truth_top is None else truth_top
    top_pred = _top_mask(pred)
    hits = float(np.sum(top_pred & top_truth))
    out["top1_precision"] = hits / max(float(top_pred.sum()), 1.0)
    out["top1_recall"] = hits / max(float(top_truth.sum()), 1.0)
    return out


def _top_mask(values: np.ndarray) -> np.ndarray:
    """Per row, the top `TOP_FRACTION` (at least one) entries."""
    n = values.shape[1]
    n_top = max(1, math.ceil(TOP_FRACTION * n))
    idx = np.argpartition(-values, n_top - 1, axis=1)[:, :n_top]
    mask = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask


def row_ranks(values: np.ndarray) -> np.ndarray:
    """Row-wise ranks (1..n), ties averaged; an argsort when a row has no ties (the common case)."""
    order = np.argsort(values, axis=1, kind="stable")
    srt = np.take_along_axis(values, order, axis=1)
    if (np.diff(srt, axis=1) == 0).any():
        return rankdata(values, axis=1)
    ranks = np.empty(values.shape, dtype=np.float64)
    positions = np.arange(1, values.shape[1] + 1, dtype=np.float64)[None, :].repeat(values.shape[0], 0)
    np.put_along_axis(ranks, order, positions, axis=1)
    return ranks


def _mean_row_spearman(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (a * b).sum(axis=1) / den
    rho = rho[np.isfinite(rho)]
    return float(rho.mean()) if rho.size else float("nan")


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# -------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """Results of `evaluate`; `to_dict()` is the `--json` object."""

    split: Split
    kind: str
    observed: int
    seeds: list[int]
    n_columns: int
    dropped_columns: int
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # first seed, [test rows, columns]
    revealed: np.ndarray | None = None  # first seed's revealed columns (indices into `columns`)
    columns: np.ndarray | None = None  # indices of the kept columns in the matrix

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "split": self.split.to_dict(), "observed": self.observed,
            "seeds": self.seeds, "n_train": len(self.split.train), "n_test": len(self.split.test),
            "n_columns": self.n_columns, "dropped_columns": self.dropped_columns,
            "methods": self.methods,
        }


def metric_names(kind: str) -> list[str]:
    return (["f1", "precision", "recall", "auroc"] if kind == "binary" else ["rmse", "spearman"]) + \
        ["top1_precision", "top1_recall"]


def check_methods(methods: list[str], kind: str) -> list[str]:
    """Validate method names for a matrix kind before any work starts."""
    if not methods:
        raise LmforgetError("no prediction methods given")
    known = list_completers()
    for name in methods:
        if name not in known:
            raise LmforgetError(f"unknown prediction method {name!r}; choose from {', '.join(known)}")
    if kind != "binary":
        binary_only = [m for m in methods if m in list_completers("binary") and m not in list_completers("logppl")]
        if binary_only:
            raise LmforgetError(f"method(s) {', '.join(binary_only)} need a binary matrix; this one is {kind}")
    return list(methods)


def prepare(matrix: ForgettingMatrix, split: Split, observed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Training rows, test rows and kept column indices after the NaN policy; checks k."""
    tr = matrix.rows(split.train)
    te = matrix.rows(split.test)
    used = matrix.subset(rows=np.concatenate([tr, te]))
    complete, how = used.complete()
    if how.rows_dropped:  # the split names them: dropping them would change the split
        raise LmforgetError(f"task(s) {', '.join(how.rows_dropped[:5])} have no measured entries (all NaN); "
                            "drop them from the split")
    keep = how.columns
    if keep.size < 2:
        raise LmforgetError(f"only {keep.size} column(s) have no NaN in the split's rows; nothing to predict")
    if observed < 1:
        raise LmforgetError(f"--observed must be at least 1, got {observed}")
    if observed >= keep.size:
        raise LmforgetError(f"--observed {observed} is not smaller than the {keep.size} usable columns "
                            f"(N = {matrix.Z.shape[1]}, {matrix.Z.shape[1] - keep.size} dropped for NaN)")
    Zk = complete.Z.astype(np.float64)
    return Zk[:tr.size], Zk[tr.size:], keep, int(matrix.Z.shape[1] - keep.size)


def evaluate(matrix: ForgettingMatrix, split: Split, methods: list[str], observed: int = 30,
             seeds: int | list[int] = 10, params: dict[str, dict[str, Any]] | None = None,
             keep_predictions: bool = False) -> Evaluation:
    """Run the protocol: fit each method once on the training rows, predict test rows per seed."""
    methods = check_methods(methods, matrix.kind)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise LmforgetError("--seeds must be at least 1")
    params = params or {}
    train, test, keep, dropped = prepare(matrix, split, observed)
    n = keep.size
    reveals = [reveal_columns(n, observed, s) for s in seed_list]
    unrevealed = []
    for cols in reveals:
        m = np.ones(n, dtype=bool)
        m[cols] = False
        unrevealed.append(m)
    ev = Evaluation(split=split, kind=matrix.kind, observed=observed, seeds=seed_list, n_columns=n,
                    dropped_columns=dropped, revealed=reveals[0], columns=keep)
    completers, fit_seconds = {}, {}
    for name in methods:
        completer = get_completer(name, **params.get(name, {}))
        if "cv_observed" in completer.get_params():
            completer.set_params(cv_observed=observed)
        t0 = time.perf_counter()
        completers[name] = completer.fit(train)
        fit_seconds[name] = time.perf_counter() - t0
    per_seed: dict[str, list[dict]] = {name: [] for name in methods}
    predict_seconds = dict.fromkeys(methods, 0.0)
    for s, cols, m in zip(seed_list, reveals, unrevealed, strict=True):
        R = np.full(test.shape, np.nan)
        R[:, cols] = test[:, cols]
        truth = test[:, m]
        ranks = row_ranks(truth) if matrix.kind != "binary" else None
        top = _top_mask(truth) if matrix.kind != "binary" else None
        for name, completer in completers.items():
            t1 = time.perf_counter()
            pred, fallback = completer.predict(R, return_fallback=True)
            predict_seconds[name] += time.perf_counter() - t1
            per_seed[name].append({"seed": s, **score(truth, pred[:, m], matrix.kind, ranks, top),
                                   "n_fallback": int(fallback[:, m].sum())})
            if keep_predictions and s == seed_list[0]:
                ev.predictions[name] = pred.astype(np.float32)
    for name, completer in completers.items():
        summary: dict[str, Any] = {}
        for metric in metric_names(matrix.kind):
            vals = np.array([p[metric] for p in per_seed[name]], dtype=np.float64)
            summary[f"{metric}_mean"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
            summary[f"{metric}_std"] = float(np.nanstd(vals)) if np.isfinite(vals).any() else float("nan")
        # scored entries predicted from the prior alone (nothing known about them), over all seeds
        summary["n_fallback"] = sum(p["n_fallback"] for p in per_seed[name])
        summary.update(seconds=fit_seconds[name] + predict_seconds[name], fit_seconds=fit_seconds[name],
                       predict_seconds=predict_seconds[name], params=completer.get_params(),
                       fitted={k: getattr(completer, k) for k in ("rank_", "noise_scale_", "intercept_")
                               if hasattr(completer, k)},
                       per_seed=per_seed[name])
        ev.methods[name] = summary
    return ev
