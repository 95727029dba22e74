"""The study's numbers: mean held-out forgetting per method, reductions, paired tests across tasks.

Input is a tasks x methods table F of mean NLL increases on the held-out set (one fine-tuning per
cell). Comparisons are paired by task: the paired t-test and the Wilcoxon signed-rank test
(two-sided, scipy.stats) of each method against random replay (and against no replay), with a
bootstrap CI over tasks of the mean difference. A study compares several methods with random replay,
so the t-test p-values of that family are also Holm-adjusted (`t_p_holm`). Each method is also tested
against zero: replay that only restores what was forgotten cannot push the held-out NLL *below* the
base model's, so a mean increase significantly below 0 is flagged as adaptation (learning the upstream
data), not mitigation.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np


def _reduction(base: float, value: float) -> float | None:
    """Relative reduction of forgetting: (base - value) / |base|; None when base is ~0."""
    if not np.isfinite(base) or abs(base) < 1e-12:
        return None
    return float((base - value) / abs(base))


def paired_tests(a: np.ndarray, b: np.ndarray) -> dict:
    """Two-sided paired t-test and Wilcoxon signed-rank of a vs b, and the bootstrap CI (`ci`) of the mean of
    a - b; NaN p-values when undefined."""
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    diff = a - b
    out: dict = {"n": int(len(diff)), "mean_difference": float(diff.mean()) if len(diff) else math.nan,
                 "wins": int((diff < 0).sum()), "losses": int((diff > 0).sum()), "ci": bootstrap_ci(diff)}
    if len(diff) < 2 or not np.any(diff):
        out.update(t=math.nan, t_p=math.nan, wilcoxon=math.nan, wilcoxon_p=math.nan,
                   note="fewer than 2 tasks or identical results: tests undefined")
        return out
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant differences: t is +-inf, not an error
        t = stats.ttest_rel(a, b)
    out["t"], out["t_p"] = float(t.statistic), float(t.pvalue)
    try:
        w = stats.wilcoxon(a, b)
        out["wilcoxon"], out["wilcoxon_p"] = float(w.statistic), float(w.pvalue)
    except ValueError as exc:
        out["wilcoxon"], out["wilcoxon_p"], out["note"] = math.nan, math.nan, str(exc)
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone); NaN stays NaN and is not counted."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(len(p), math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        out[i] = running
    return out.tolist()


def bootstrap_ci(diff: np.ndarray, n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> list[float]:
    """Percentile bootstrap CI (over tasks, seeded) of the mean of paired differences."""
    diff = np.asarray(diff, dtype=np.float64)
    if len(diff) < 2:
        return [math.nan, math.nan]
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)
    alpha = (1 - level) / 2
    return [float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))]


def below_zero(values: np.ndarray, alpha: float = 0.05) -> dict:
    """One-sample tests of the per-task held-out increases against 0; `adaptation` when significantly < 0."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    out: dict = {"n": int(len(v)), "t_p": math.nan, "wilcoxon_p": math.nan}
    if len(v) >= 2 and np.any(v):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out["t_p"] = float(stats.ttest_1samp(v, 0.0).pvalue)
        try:
            out["wilcoxon_p"] = float(stats.wilcoxon(v).pvalue)
        except ValueError:
            pass
    out["ci"] = bootstrap_ci(v)
    out["adaptation"] = bool(len(v) >= 2 and v.mean() < 0 and np.isfinite(out["t_p"]) and out["t_p"] < alpha)
    return out


def by_reference_quantile(reference: np.ndarray, values: np.ndarray, names: Sequence[str],
                          n_bins: int = 4) -> dict:
    """Where replay acts: each method's held-out increase within equal-size bins of a reference row.

    `reference` [T, N]: per task, how much the previous run forgot each held-out example; `values`
    [T, M, N]: each method's held-out increase. Bins are formed per task by the rank of the reference
    (bin 0 = least forgotten in the run); examples undefined in either are left out. The reference comes
    from another fine-tuning than the methods', so comparing replaying methods within a bin does not
    select on their own noise (a method that repeats the reference's fine-tuning, like `none`, shares
    some of it). Returns per-method bin means (averaged over tasks) and each method's paired
    difference to random replay per bin, with the number of tasks where it was lower.
    """
    reference = np.asarray(reference, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    T, M, _ = values.shape
    per_task = np.full((T, M, n_bins), math.nan)
    for t in range(T):
        ok = np.isfinite(reference[t]) & np.all(np.isfinite(values[t]), axis=0)
        idx = np.flatnonzero(ok)
        if len(idx) < n_bins:
            continue
        order = idx[np.argsort(reference[t, idx], kind="stable")]
        for b, cols in enumerate(np.array_split(order, n_bins)):
            per_task[t, :, b] = values[t][:, cols].mean(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a task without enough examples: all-NaN bins
        out: dict = {"n_bins": n_bins, "n_tasks": T,
                     "methods": {m: np.nanmean(per_task[:, j], axis=0).tolist() for j, m in enumerate(names)}}
        if "random" in names:
            r = list(names).index("random")
            diff = per_task - per_task[:, r:r + 1]
            out["vs_random"] = {m: {"mean_difference": np.nanmean(diff[:, j], axis=0).tolist(),
                                    "wins": (diff[:, j] < 0).sum(axis=0).tolist()}
                                for j, m in enumerate(names) if m != "random"}
    return out


def summarize(F: np.ndarray, methods: Sequence[str], tasks: Sequence[str]) -> dict:
    """Per-method summary of a complete tasks x methods table (no NaN)."""
    F = np.asarray(F, dtype=np.float64)
    means = F.mean(axis=0)
    col = {m: j for j, m in enumerate(methods)}
    out: dict = {"tasks": list(tasks), "methods": {}}
    for j, m in enumerate(methods):
        sd = float(F[:, j].std(ddof=1)) if len(tasks) > 1 else math.nan
        entry: dict = {
            "mean_increase": float(means[j]),
            "std_increase": sd,
            "sem_increase": sd / math.sqrt(len(tasks)) if len(tasks) > 1 else math.nan,
            "per_task": {t: float(v) for t, v in zip(tasks, F[:, j], strict=True)},
        }
        for ref in ("none", "random"):
            if ref in col:
                entry[f"reduction_vs_{ref}"] = _reduction(float(means[col[ref]]), float(means[j]))
                if ref != m:
                    entry[f"vs_{ref}"] = paired_tests(F[:, j], F[:, col[ref]])
        entry["vs_zero"] = below_zero(F[:, j])
        out["methods"][m] = entry
    _holm_families(out["methods"], methods)
    return out


def _holm_families(entries: dict, methods: Sequence[str]) -> None:
    """Holm-adjust the t-tests of every other method against random, and (separately) against none."""
    for ref in ("random", "none"):
        family = [m for m in methods if m not in ("none", ref) and f"vs_{ref}" in entries[m]]
        for m, p in zip(family, holm([entries[m][f"vs_{ref}"]["t_p"] for m in family]), strict=True):
            entries[m][f"vs_{ref}"]["t_p_holm"] = p


def median_share(gain: np.ndarray, reference: np.ndarray) -> float | None:
    """The median over tasks of gain / reference, over the tasks where the reference gained (None if none did).
    A ratio of means weighs tasks by the size of their gain; this weighs them alike."""
    learned = np.asarray(reference) > 1e-12
    return float(np.median(np.asarray(gain)[learned] / np.asarray(reference)[learned])) if learned.any() else None


def summarize_gain(G: np.ndarray, methods: Sequence[str], tasks: Sequence[str]) -> dict:
    """Per-method task gain (what the model learned of its task; higher = learned more) of a complete tasks
    x methods table: mean, SEM, the share of no replay's gain kept, and paired tests against none and random
    (`vs_*`: the method minus the reference, so `losses` counts the tasks where the method gained MORE)."""
    G = np.asarray(G, dtype=np.float64)
    col = {m: j for j, m in enumerate(methods)}
    out: dict = {"tasks": list(tasks), "methods": {}}
    for j, m in enumerate(methods):
        sd = float(G[:, j].std(ddof=1)) if len(tasks) > 1 else math.nan
        entry: dict = {"mean_gain": float(G[:, j].mean()), "std_gain": sd,
                       "sem_gain": sd / math.sqrt(len(tasks)) if len(tasks) > 1 else math.nan,
                       "per_task": {t: float(v) for t, v in zip(tasks, G[:, j], strict=True)}}
        if "none" in col:
            base = float(G[:, col["none"]].mean())
            entry["retained_vs_none"] = float(G[:, j].mean() / base) if abs(base) > 1e-12 else None
            entry["median_task_retained_vs_none"] = median_share(G[:, j], G[:, col["none"]])
        for ref in ("none", "random"):
            if ref in col and ref != m:
                entry[f"vs_{ref}"] = paired_tests(G[:, j], G[:, col[ref]])
        out["methods"][m] = entry
    _holm_families(out["methods"], methods)
    return out


def pareto_front(forgetting: dict[str, float], gain: dict[str, float]) -> list[str]:
    """The methods no other method beats on both axes (forgets no more and learns no less, one strictly)."""
    names = [n for n in forgetting if n in gain and np.isfinite(forgetting[n]) and np.isfinite(gain[n])]
    front = []
    for n in names:
        dominated = any(forgetting[o] <= forgetting[n] and gain[o] >= gain[n]
                        and (forgetting[o] < forgetting[n] or gain[o] > gain[n]) for o in names if o != n)
        if not dominated:
            front.append(n)
    return sorted(front, key=lambda n: forgetting[n])
