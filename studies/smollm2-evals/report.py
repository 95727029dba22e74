"""Assemble study 2's results: results/results.json and results/report.md from every finished part.

    python studies/smollm2-evals/report.py                      # after any part; recomputes no model output
    python studies/smollm2-evals/report.py --select-only        # print the chosen --methods for the replay part

Reads what the parts wrote (studies/common/analyze.py: results/r2_bootstrap.json; studies/common/predict.py:
results/prediction/prediction.json; the replay studies runs/select, runs/replay, runs/replay-33:
results.json and report.md), puts study 1's matrix and prediction numbers next to study 2's, applies the
lambda / alpha rule to runs/select (results/select.json), checks the mitigation goal on runs/replay, and
pairs arms per task: targeted vs random replay under each objective, and KL replay's weights vs none's at
each WiSE-FT alpha.

The selection rule (fixed in select.yaml before any select cell ran): per setting, the mean over the select
tasks of held-out forgetting and of task gain (answer NLL decrease, the gain every cell measures); lambda
(L2-SP) and alpha (WiSE-FT) = the setting with the lowest forgetting among those that keep >= 95% of none's
task gain; when no setting keeps 95%, the one that keeps the most.

The goal (issue 23): cut held-out forgetting by >= 80% of none's while keeping >= 95% of none's task gain,
significant over the test tasks. Per method two one-sided paired tests over tasks: forgetting,
F_method < 0.2 x F_none (t-test and Wilcoxon), and gain non-inferiority, G_method > 0.95 x G_none.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "common"))  # the analysis scripts both studies use
from analyze import render as render_r2  # noqa: E402
from predict import render as render_prediction  # noqa: E402
from report_parts import included, read_part  # noqa: E402

from lmforget.atomic import write_json, write_text  # noqa: E402
from lmforget.replay.methods import parse_method  # noqa: E402

R2_ROWS = ["rank-1", "rank-2", "rank-3", "rank-5", "rank-10", "additive", "example_only", "task_only"]
STUDY1 = HERE.parent / "smollm2-ni" / "results"
CUT, KEEP = 0.8, 0.95
# Arms added after the 6-task interim look (announced before any of their cells ran): the goal table marks
# them, since a post hoc pass would be a lead to confirm on new tasks, not a result.
EXPLORATORY = ("kl-random+wise-ft@0.5", "kl-random+wise-ft@0.75")


# ------------------------------------------------------------------ lambda and alpha
def setting_value(family: str, name: str) -> float | None:
    """The value a method name sets in a family of settings (None: not of the family): `l2-sp@LAMBDA`,
    `wise-ft@ALPHA`, and the KL weight W of `kl-random+kl-weight@W` (`kl-random` itself: select.yaml's
    default weight, 1). Names are read by lmforget's own method parser."""
    m = parse_method(name)
    if family == "kl-weight":
        alone = (m.source, m.objective, m.l2sp, m.lora_rank, m.wise_ft) == ("random", "kl", None, None, None)
        return (m.kl_weight or 1.0) if alone else None
    if m.source != "none" or m.lora_rank is not None:
        return None
    if family == "l2-sp":
        return m.l2sp if m.wise_ft is None else None
    return m.wise_ft if family == "wise-ft" and m.l2sp is None else None


def choose(results: dict, family: str) -> dict | None:
    """The select rule for one family of settings (`l2-sp`, `wise-ft`, `kl-weight`) on a select study's results."""
    gains = results.get("task_gain", {}).get("methods")
    if not gains or "none" not in gains:
        return None
    base = gains["none"]["mean_gain"]
    rows = []
    for name, m in results["methods"].items():
        value = setting_value(family, name)
        if value is None:
            continue
        kept = gains[name]["mean_gain"] / base if abs(base) > 1e-12 else math.nan
        per_task = {t: g / gains["none"]["per_task"][t] for t, g in gains[name].get("per_task", {}).items()
                    if abs(gains["none"]["per_task"].get(t, 0.0)) > 1e-12}
        rows.append({"method": name, "value": value, "forgetting": m["mean_increase"],
                     "reduction_vs_none": m.get("reduction_vs_none"), "gain": gains[name]["mean_gain"],
                     "kept": kept, "kept_per_task": per_task})
    if not rows:
        return None
    keeping = [r for r in rows if r["kept"] >= KEEP]
    chosen = min(keeping, key=lambda r: r["forgetting"]) if keeping else max(rows, key=lambda r: r["kept"])
    return {"chosen": chosen["method"], "value": chosen["value"], "kept_95": bool(keeping),
            "none": {"forgetting": results["methods"]["none"]["mean_increase"], "gain": base},
            "settings": sorted(rows, key=lambda r: r["value"])}


def select_section(select: dict | None) -> tuple[list[str], dict | None]:
    title = "## Choosing lambda (L2-SP), alpha (WiSE-FT) and the KL weight"
    if select is None or not select.get("complete"):
        return [title, "", "Not finished yet.", ""], None
    picks = {family: choose(select, family) for family in ("l2-sp", "wise-ft", "kl-weight")}
    tasks = ", ".join(select["tasks"])
    lines = [title, "", f"On {tasks} (not test tasks); means over the {len(select['tasks'])} tasks. Rule, fixed "
             "before running: the lowest held-out forgetting among the settings that keep >= 95% of none's task "
             "gain (answer-NLL decrease).", "",
             "| setting | held-out forgetting | cut vs none | task gain | kept of none's | kept, worst task |",
             "|---|---:|---:|---:|---:|---:|"]
    none = select["methods"]["none"]["mean_increase"]
    base = select["task_gain"]["methods"]["none"]["mean_gain"]
    lines.append(f"| none | {none:+.4f} | | {base:.3f} | 100% | 100% |")
    for fam in picks.values():
        for r in fam["settings"] if fam else []:
            mark = " (chosen)" if r["method"] == fam["chosen"] else ""
            worst = min(r["kept_per_task"].items(), key=lambda kv: kv[1]) if r["kept_per_task"] else None
            lines.append(f"| {r['method']}{mark} | {r['forgetting']:+.4f} | {100 * (r['reduction_vs_none'] or 0):.1f}% "
                         f"| {r['gain']:.3f} | {100 * r['kept']:.1f}% | "
                         + (f"{100 * worst[1]:.1f}% ({worst[0]}) |" if worst else "|"))
    low = []  # chosen settings that keep < 95% of none's gain on some task
    for name, fam in picks.items():
        if fam and not fam["kept_95"]:
            lines += ["", f"No {name} setting kept 95% of none's gain; the one that kept the most is used."]
        chosen_row = next((r for r in fam["settings"] if r["method"] == fam["chosen"]), None) if fam else None
        if chosen_row and chosen_row["kept_per_task"] and min(chosen_row["kept_per_task"].values()) < KEEP:
            low.append(f"{chosen_row['method']} keeps {100 * chosen_row['kept']:.1f}% of none's mean gain but "
                       f"{100 * min(chosen_row['kept_per_task'].values()):.1f}% on its worst task")
        values = [r["value"] for r in fam["settings"]] if fam else []
        if chosen_row and len(values) > 1 and chosen_row["value"] in (min(values), max(values)):
            lines += ["", f"{chosen_row['method']} is at the edge of the grid ({', '.join(f'{v:g}' for v in values)}): "
                      "the rule's optimum may lie beyond it."]
    if low:
        lines += ["", "The rule averages the raw gains over the tasks, so a task with a large NLL gain weighs more: "
                  + "; ".join(low) + ". The rule stays as fixed. The mitigation study trains only the chosen L2-SP "
                  "lambda, and scores WiSE-FT at every alpha of the grid (post hoc, scoring only)."]
    chosen = {k: v["chosen"] for k, v in picks.items() if v}
    if "wise-ft" in chosen:
        chosen["kl-random+wise-ft"] = "kl-random+" + chosen["wise-ft"]
    # what the replay part adds to replay.yaml's methods (which already score WiSE-FT at every alpha, and
    # kl-random at weight 1)
    added = [m for k, m in chosen.items() if k != "wise-ft" and m != "kl-random"]
    return lines + [""], {"picks": picks, "chosen": chosen, "methods": added}


# ------------------------------------------------------------------ the goal
def _one_sided(diff: np.ndarray) -> dict:
    """p-values that the mean (t) / median (Wilcoxon) of `diff` is below 0."""
    from scipy import stats

    out = {"t_p": math.nan, "wilcoxon_p": math.nan}
    if len(diff) >= 2 and np.any(diff):
        out["t_p"] = float(stats.ttest_1samp(diff, 0.0, alternative="less").pvalue)
        try:
            out["wilcoxon_p"] = float(stats.wilcoxon(diff, alternative="less").pvalue)
        except ValueError:
            pass
    return out


GAIN_MEASURES = {"task_gain": "answer-NLL decrease", "task_em_gain": "exact-match increase of greedy answers"}


def goal_check(results: dict, measure: str = "task_gain") -> dict | None:
    """Per method: cut of forgetting and share of gain (`measure`: a key of GAIN_MEASURES) kept vs none, with the
    two one-sided tests per task, over the tasks where the gain was measured."""
    from lmforget.replay.stats import median_share

    gains = results.get(measure, {}).get("methods")
    methods = results.get("methods", {})
    if not gains or "none" not in methods:
        return None
    tasks = results[measure]["tasks"]
    f_none = np.array([methods["none"]["per_task"][t] for t in tasks])
    g_none = np.array([gains["none"]["per_task"][t] for t in tasks])
    out = {}
    for name, m in methods.items():
        if name == "none" or name not in gains:
            continue
        f = np.array([m["per_task"][t] for t in tasks])
        g = np.array([gains[name]["per_task"][t] for t in tasks])
        cut, kept = _one_sided(f - (1 - CUT) * f_none), _one_sided((KEEP * g_none) - g)
        out[name] = {"reduction_vs_none": 1 - f.mean() / f_none.mean(), "kept": g.mean() / g_none.mean(),
                     "median_task_kept": median_share(g, g_none),
                     "cut_80_p": cut, "keep_95_p": kept,
                     "met": bool(cut["t_p"] < 0.05 and kept["t_p"] < 0.05 and cut["wilcoxon_p"] < 0.05
                                 and kept["wilcoxon_p"] < 0.05)}
    return {"measure": measure, "tasks": tasks, "none_gain": float(g_none.mean()), "methods": out}


def goal_lines(goal: dict | None) -> list[str]:
    if not goal:
        return []
    what = GAIN_MEASURES[goal.get("measure", "task_gain")]
    lines = [f"### The goal: >= 80% less forgetting than none, >= 95% of its task gain ({what})", "",
             f"One-sided paired tests over the {len(goal['tasks'])} test tasks where it was measured: forgetting below "
             "20% of none's (F - 0.2 F_none < 0) and gain above 95% of none's (0.95 G_none - G < 0); met = both "
             f"p < 0.05 by the t-test and by Wilcoxon. none's mean gain: {goal['none_gain']:+.3f}. Gain kept is "
             "the ratio of the mean gains (the rule); beside it, the median over tasks of each task's own ratio "
             "(tasks where none gained), which weighs the tasks alike.", "",
             "| method | cut vs none | gain kept | median per task | p (cut >= 80%) t / W | p (kept >= 95%) t / W "
             "| met |", "|---|---:|---:|---:|---|---|---|"]
    for name, r in sorted(goal["methods"].items(), key=lambda kv: -kv[1]["reduction_vs_none"]):
        c, k = r["cut_80_p"], r["keep_95_p"]
        med = r.get("median_task_kept")
        label = f"{name} (exploratory)" if name in EXPLORATORY else name
        lines.append(f"| {label} | {100 * r['reduction_vs_none']:.1f}% | {100 * r['kept']:.1f}% | "
                     f"{'n/a' if med is None else f'{100 * med:.1f}%'} | "
                     f"{c['t_p']:.3g} / {c['wilcoxon_p']:.3g} | {k['t_p']:.3g} / {k['wilcoxon_p']:.3g} | "
                     f"{'yes' if r['met'] else 'no'} |")
    shown = [name for name in EXPLORATORY if name in goal["methods"]]
    if shown:
        lines += ["", f"Exploratory, added after the 6-task interim: {', '.join(shown)}. No test in this table is "
                  "corrected for the number of arms."]
    return lines + [""]


# ------------------------------------------------------------------ pairs of arms: targeting, KL with WiSE-FT
TARGETING = (("oracle", "random"), ("kl-oracle", "kl-random"))


def paired_arms(results: dict | None, pairs) -> dict | None:
    """Each pair (a, b) of arms, per task: forgetting and answer-NLL gain, two-sided paired tests and a
    bootstrap CI of a minus b, over the tasks where both have a value. Pairs with an arm missing are left out."""
    from lmforget.replay.stats import paired_tests

    if not results:
        return None
    out = {}
    for first, second in pairs:
        parts = {}
        for measure, source in (("forgetting", results.get("methods", {})),
                                ("task_gain", results.get("task_gain", {}).get("methods", {}))):
            if first not in source or second not in source:
                continue
            a, b = source[first]["per_task"], source[second]["per_task"]
            tasks = [t for t in a if t in b and None not in (a[t], b[t])  # JSON writes NaN as null
                     and np.isfinite(a[t]) and np.isfinite(b[t])]
            if len(tasks) < 2:
                continue
            x, y = np.array([a[t] for t in tasks]), np.array([b[t] for t in tasks])
            parts[measure] = {"tasks": tasks, "a": float(x.mean()), "b": float(y.mean()), **paired_tests(x, y)}
        if "forgetting" in parts:
            out[f"{first} vs {second}"] = parts
    return out or None


def pair_lines(check: dict | None, title: str, intro: str, first: str, second: str, missing: str) -> list[str]:
    if not check:
        return [title, "", missing, ""]
    lines = [title, "", intro + " Paired over the tasks both arms finished, two-sided tests. Forgetting: lower is "
             f"better; task gain: higher is better. `{first} lower`: the tasks where the first arm's value was the "
             "lower one.", "",
             f"| comparison | measure | tasks | {first} | {second} | difference [95% CI] | t-test p | Wilcoxon p | "
             f"{first} lower |", "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for name, parts in check.items():
        for measure, r in parts.items():
            lines.append(f"| {name} | {measure.replace('_', ' ')} | {r['n']} | {r['a']:+.4f} | "
                         f"{r['b']:+.4f} | {r['mean_difference']:+.4f} [{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}] | "
                         f"{r['t_p']:.3g} | {r['wilcoxon_p']:.3g} | {r['wins']} of {r['n']} |")
    return lines + [""]


def targeting_check(results: dict | None) -> dict | None:
    """Targeted against random replay under each replay objective (next-token, KL)."""
    return paired_arms(results, TARGETING)


def targeting_lines(check: dict | None) -> list[str]:
    return pair_lines(check, "## Does targeting help once the replay objective is KL?",
                      "Targeted replay (the run's own row, softmax T = 0.1) minus random replay of the same number of "
                      "examples, under each objective.", "targeted", "random",
                      "Not measured yet (needs oracle, random, kl-oracle and kl-random cells).")


def combine_check(results: dict | None) -> dict | None:
    """KL replay's weights against none's at each WiSE-FT alpha both were scored at (alpha 1: the arms)."""
    methods = (results or {}).get("methods", {})
    alphas = sorted({m.wise_ft for m in map(parse_method, methods) if m.wise_ft is not None})
    pairs = [(f"kl-random+wise-ft@{a:g}", f"wise-ft@{a:g}") for a in alphas] + [("kl-random", "none")]
    return paired_arms(results, pairs)


def combine_lines(check: dict | None) -> list[str]:
    return pair_lines(check, "## Do KL replay and WiSE-FT combine?",
                      "kl-random's weights moved back towards the base model (`kl-random+wise-ft@ALPHA`) minus none's "
                      "moved back as far (`wise-ft@ALPHA`); alpha 1 is the two arms themselves. If KL replay's curve "
                      "forgets less at the same alpha and keeps the gain, the two combine. Alpha 0.25 was fixed "
                      "before the study (runs/select); 0.5 and 0.75 on kl-random's weights were added after the "
                      "6-task interim, to draw its curve beside WiSE-FT's.", "KL replay", "no replay",
                      "Not measured yet (needs kl-random, none and their WiSE-FT cells).")


# ------------------------------------------------------------------ replay without the task
# Replay alone (no task; random replay's examples and steps) under KL against next-token loss, and each against
# fine-tuning on the task without replay: how far the replay gradient alone moves the model.
CONTROLS = (("kl-replay-only", "replay-only"), ("replay-only", "none"), ("kl-replay-only", "none"))
CONTROL_SECTION = {
    "title": "## Replay without the task: KL against next-token loss",
    "intro": "Training on the replayed examples alone, with random replay's examples and steps: KL to the base model "
             "(`kl-replay-only`) against next-token loss (`replay-only`, study 1's control), and each against "
             "`none` (the task, no replay). Task gain here is what training without the task did to the task's "
             "answers.",
    "first": "first", "second": "second",
    "missing": "Not measured yet (needs replay-only, kl-replay-only and none cells)."}


# ------------------------------------------------------------------ how many replayed examples KL needs
def budget_check(replay: dict | None, fewer: dict | None) -> dict | None:
    """kl-random with 33 replayed examples (runs/replay-33) against 129 (runs/replay) and none, per task:
    held-out forgetting and task gain, with paired tests of 33 against 129."""
    from lmforget.replay.stats import paired_tests

    if not replay or not fewer or "kl-random" not in fewer.get("methods", {}):
        return None
    tasks = [t for t in fewer["tasks"] if t in replay["methods"].get("kl-random", {}).get("per_task", {})]
    if len(tasks) < 2:
        return None

    def col(results: dict, method: str, key: str = "methods") -> np.ndarray:
        source = results[key]["methods"] if key != "methods" else results["methods"]
        return np.array([source[method]["per_task"][t] for t in tasks])

    def means(key: str = "methods") -> dict[str, float]:
        return {"none": float(col(replay, "none", key).mean()),
                "kl-random@129": float(col(replay, "kl-random", key).mean()),
                "kl-random@33": float(col(fewer, "kl-random", key).mean())}

    out = {"tasks": tasks, "forgetting": means()}
    out["33_vs_129"] = paired_tests(col(fewer, "kl-random"), col(replay, "kl-random"))
    out["33_vs_none"] = paired_tests(col(fewer, "kl-random"), col(replay, "none"))
    if "random" in replay["methods"]:  # next-token replay of 129
        out["33_vs_random_129"] = paired_tests(col(fewer, "kl-random"), col(replay, "random"))
    if "task_gain" in replay and "task_gain" in fewer:
        out["gain"] = means("task_gain")
        out["gain_33_vs_129"] = paired_tests(col(fewer, "kl-random", "task_gain"),
                                             col(replay, "kl-random", "task_gain"))
    return out


def budget_lines(check: dict | None) -> list[str]:
    title = "## KL replay with 33 replayed examples instead of 129"
    if not check:
        return [title, "", "Not run yet (`run.sh replay-33`, after `run.sh replay`).", ""]
    f, t = check["forgetting"], check["33_vs_129"]
    lines = [title, "", f"On the {len(check['tasks'])} tasks both studies finished; the same 400 held-out examples.",
             "", "| arm | held-out forgetting | cut vs none | task gain |", "|---|---:|---:|---:|"]
    for name in ("none", "kl-random@129", "kl-random@33"):
        gain = f"{check['gain'][name]:.3f}" if "gain" in check else ""
        cut = "" if name == "none" else f"{100 * (1 - f[name] / f['none']):.1f}%"
        lines.append(f"| {name} | {f[name]:+.4f} | {cut} | {gain} |")
    lines += ["", f"- 33 minus 129: mean {t['mean_difference']:+.4f} nats/token, 95% CI [{t['ci'][0]:+.4f}, "
              f"{t['ci'][1]:+.4f}], paired t p = {t['t_p']:.3g}, Wilcoxon p = {t['wilcoxon_p']:.3g}; 33 forgot less "
              f"on {t['wins']} of {t['n']} tasks."]
    if "33_vs_none" in check:
        v = check["33_vs_none"]
        lines.append(f"- 33 minus none: {v['mean_difference']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}], paired t "
                     f"p = {v['t_p']:.3g}, Wilcoxon p = {v['wilcoxon_p']:.3g}; lower on {v['wins']} of {v['n']} tasks.")
    if "33_vs_random_129" in check:
        v = check["33_vs_random_129"]
        lines.append(f"- 33 (KL) minus random next-token replay of 129: {v['mean_difference']:+.4f} "
                     f"[{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}], paired t p = {v['t_p']:.3g}, "
                     f"Wilcoxon p = {v['wilcoxon_p']:.3g}; lower on {v['wins']} of {v['n']} tasks.")
    if "gain_33_vs_129" in check:
        g = check["gain_33_vs_129"]
        lines.append(f"- Task gain (answer NLL), 33 minus 129: {g['mean_difference']:+.4f} [{g['ci'][0]:+.4f}, "
                     f"{g['ci'][1]:+.4f}], paired t p = {g['t_p']:.3g}, Wilcoxon p = {g['wilcoxon_p']:.3g}.")
    return lines + [""]


# ------------------------------------------------------------------ side by side
def side_by_side(r2: dict | None, pred: dict | None) -> list[str]:
    """Study 1's and study 2's matrix and prediction numbers in one table."""
    one_r2, one_pred = read_part(STUDY1 / "r2_bootstrap.json"), read_part(STUDY1 / "prediction" / "prediction.json")
    if r2 is None or one_r2 is None:
        return []
    studies = [("study 1, 48 examples x 12 steps", one_r2, one_pred),
               ("study 1, 192 x 48 (replay run)", read_part(STUDY1 / "replay-run" / "r2_bootstrap.json"), None),
               ("study 2, 192 x 48", r2, pred)]
    lines = ["## Side by side with study 1", "",
             "Same model and the same 1,000 upstream examples. Study 1: Natural-Instructions tasks; its main matrix "
             "trained 48 examples for 12 steps, its replay run 192 examples for 48 steps (study 2's regime). "
             "Study 2: eval-suite tasks. Empty: not measured.", "",
             "| | " + " | ".join(s[0] for s in studies) + " |", "|---|" + "---:|" * len(studies)]

    def row(label, get):
        vals = []
        for _, a, p in studies:
            try:
                vals.append(get(a, p))
            except (KeyError, TypeError):  # a part that study did not measure
                vals.append("")
        lines.append(f"| {label} | " + " | ".join(vals) + " |")

    row("tasks x examples", lambda a, p: f"{a['shape'][0]} x {a['shape'][1]}")
    row("mean forgetting (nats/token)", lambda a, p: f"{a['mean_forgetting']:+.4f}")
    row("entries > 0", lambda a, p: f"{100 * a['share_positive']:.1f}%")
    for k in ("rank-1", "rank-2", "rank-3", "rank-5", "additive", "example_only", "task_only"):
        row(f"R^2 {k}", lambda a, p, k=k: f"{a['r2'][k]['r2']:.3f} [{a['r2'][k]['ci_low']:.3f}, "
                                        f"{a['r2'][k]['ci_high']:.3f}]")
    row("noise ceiling of R^2", lambda a, p: f"{a['noise']['r2_ceiling']:.3f}")
    row("singular values above the noise edge", lambda a, p: f"{a['noise']['n_above_noise_edge']}")
    for method in ("colmean", "additive", "knn", "mf", "lowrank"):
        row(f"prediction RMSE, {method} (5-fold, k = 30)",
            lambda a, p, m=method: f"{p['cv'][m]['rmse_mean']:.4f}")
    row("replicate RMSE (noise floor)", lambda a, p: f"{p['noise']['replicate_rmse']:.4f}")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, default=HERE / "runs")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--select-only", action="store_true", help="print the replay part's chosen --methods")
    args = ap.parse_args()
    select_lines, chosen = select_section(read_part(args.runs / "select" / "results.json"))
    if args.select_only:
        if chosen is None:
            raise SystemExit("runs/select is not finished: run `studies/smollm2-evals/run.sh select` first")
        print(",".join(chosen["methods"]))
        return
    r2 = read_part(args.results / "r2_bootstrap.json")
    pred = read_part(args.results / "prediction" / "prediction.json")
    replay = read_part(args.runs / "replay" / "results.json")
    goals = {m: goal_check(replay, m) for m in GAIN_MEASURES} if replay else {}
    goal = goals.get("task_gain")
    lines = ["# Study 2: SmolLM2-135M-Instruct x eval-suite tasks: results", "",
             "Assembled by `report.py` from the parts' outputs; see README.md for the settings and commands.", ""]
    if r2 is None:
        lines += ["## Forgetting matrix", "", "Not analysed yet (`run.sh analyze` after the matrix).", ""]
    else:
        lines += ["## Forgetting matrix", "", f"{r2['shape'][0]} tasks x {r2['shape'][1]} upstream examples.", "",
                  *render_r2(r2, [k for k in R2_ROWS if k in r2["r2"]]), ""]
    lines += (render_prediction(pred, level=2).splitlines() + [""]) if pred else \
        ["## Predicting forgetting of unseen tasks", "", "Not run yet.", ""]
    lines += side_by_side(r2, pred)
    lines += select_lines
    lines += included("Mitigation", args.runs / "replay" / "report.md", "Not finished yet.")
    for g in goals.values():
        lines += goal_lines(g)
    targeting = targeting_check(replay)
    lines += targeting_lines(targeting)
    combine = combine_check(replay)
    lines += combine_lines(combine)
    controls = paired_arms(replay, CONTROLS)
    lines += pair_lines(controls, **CONTROL_SECTION)
    budget = budget_check(replay, read_part(args.runs / "replay-33" / "results.json"))
    lines += budget_lines(budget)
    parts = {"matrix": r2, "prediction": pred, "select": chosen, "goal": goal,
             "goal_exact_match": goals.get("task_em_gain"), "targeting": targeting, "kl_with_wise_ft": combine,
             "replay_alone": controls, "kl_budget": budget,
             "replay": {k: v for k, v in replay.items() if k != "cells"} if replay else None}
    args.results.mkdir(parents=True, exist_ok=True)
    if chosen is not None:
        write_json(args.results / "select.json", chosen)
    write_json(args.results / "results.json", {k: v for k, v in parts.items() if v is not None})
    write_text(args.results / "report.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
