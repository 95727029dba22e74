"""report.md of a replay study: the measured outcome in words and a table, with the p-values."""

from __future__ import annotations

import math


def _num(v, fmt: str = "+.4f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:+.1f}%"


def _paired(t: dict | None, count: str, fmt: str = "+.4f") -> str:
    """One paired comparison in a cell: mean difference [95% bootstrap CI], Holm p, Wilcoxon p, k/n tasks.
    `count`: `wins` (the method was lower) or `losses` (it was higher, e.g. gained more)."""
    if not t:
        return ""
    ci = t.get("ci") or [None, None]
    return (f"{_num(t.get('mean_difference'), fmt)} [{_num(ci[0], fmt)}, {_num(ci[1], fmt)}], "
            f"{_num(t.get('t_p_holm', t.get('t_p')), '.3g')}, {_num(t.get('wilcoxon_p'), '.3g')}, "
            f"{t.get(count, 0)}/{t.get('n', 0)}")


def _verdict(results: dict) -> list[str]:
    """Plain sentences: did targeted replay beat random replay, and is it significant?"""
    methods = results["methods"]
    lines = []
    if "random" not in methods:
        return ["Random replay was not run, so targeted replay is not compared with it."]
    rnd = methods["random"]["mean_increase"]
    for name, m in methods.items():
        if name in ("none", "random"):
            continue
        test = m.get("vs_random", {})
        diff = m["mean_increase"] - rnd
        p = test.get("t_p_holm", test.get("t_p"))
        sig = p is not None and math.isfinite(p) and p < 0.05
        lines.append(
            f"- **{name}** {'forgot less' if diff < 0 else 'forgot more' if diff > 0 else 'forgot as much'} "
            f"than random replay "
            f"({_num(m['mean_increase'])} vs {_num(rnd)} nats/token; reduction {_pct(m.get('reduction_vs_random'))}; "
            f"lower on {test.get('wins', 0)} of {test.get('n', 0)} tasks; "
            f"paired t-test p = {_num(test.get('t_p'), '.3g')} (Holm-adjusted {_num(test.get('t_p_holm'), '.3g')}), "
            f"Wilcoxon p = {_num(test.get('wilcoxon_p'), '.3g')}): "
            f"{'significant' if sig else 'not significant'} at 0.05 by the Holm-adjusted t-test.")
    for name, m in methods.items():
        z = m.get("vs_zero") or {}
        if z.get("adaptation"):
            lines.append(f"- **Warning: {name} ends below the base model** "
                         f"(held-out change {_num(m['mean_increase'])}, "
                         f"t-test against 0 p = {_num(z.get('t_p'), '.3g')}): it learned the upstream data "
                         "(adaptation, overshoot), which restoring what was forgotten cannot do; its numbers "
                         "do not measure mitigation.")
    if "none" in methods:
        none = methods["none"]["mean_increase"]
        lines.append(f"- Random replay vs no replay: {_num(rnd)} vs {_num(none)} nats/token "
                     f"(reduction {_pct(methods['random'].get('reduction_vs_none'))}).")
    return lines


def _quartile_section(results: dict) -> list[str]:
    """Held-out increase per method within quartiles of the previous run's forgetting: where replay acts."""
    q = results.get("by_run_quartile")
    if not q:
        return []
    k = q["n_bins"]
    cols = [f"Q{b + 1}" + (" (least)" if b == 0 else " (most)" if b == k - 1 else "") for b in range(k)]
    lines = ["", "## Where replay acts", "",
             f"Held-out examples split per task into {k} equal bins by how much the previous run forgot them "
             "(Q1 least, "
             f"Q{k} most); mean held-out increase per bin over the {q['n_tasks']} tasks, then each method minus "
             "random replay (tasks where it was lower in brackets). The bins come from the previous run, not "
             "from any arm here, so comparing replaying arms within a bin selects on none of their noise; `none` "
             "repeats the run's fine-tuning of the task, so part of its spread across bins is the run's own "
             "noise.", "",
             "| method | " + " | ".join(cols) + " |", "|---|" + "---:|" * k]
    for name, vals in q["methods"].items():
        lines.append(f"| {name} | " + " | ".join(_num(v) for v in vals) + " |")
    if q.get("vs_random"):
        lines += ["", "| method - random | " + " | ".join(cols) + " |", "|---|" + "---:|" * k]
        for name, d in q["vs_random"].items():
            lines.append(f"| {name} | " + " | ".join(f"{_num(v)} ({w}/{q['n_tasks']})" for v, w in
                                                     zip(d["mean_difference"], d["wins"], strict=True)) + " |")
    return lines


def _vs_none_section(methods: dict) -> list[str]:
    """Held-out forgetting of every arm against no replay: what each arm cuts, with its paired tests."""
    rows = [(name, m) for name, m in methods.items() if m.get("vs_none")]
    if not rows:
        return []
    n = rows[0][1]["vs_none"]["n"]
    lines = ["", "### Against no replay", "",
             f"Each method's held-out increase minus none's, paired over the {n} tasks (Holm over every method "
             "compared with none); `lower` counts the tasks where the method forgot less than none.", "",
             "| method | mean increase | cut vs none | vs none: diff [95% CI], Holm p, Wilcoxon p, lower |",
             "|---|---:|---:|---|"]
    for name, m in rows:
        lines.append(f"| {name} | {_num(m['mean_increase'])} | {_pct(m.get('reduction_vs_none'))} | "
                     f"{_paired(m['vs_none'], 'wins')} |")
    return lines


def _gain_section(results: dict) -> list[str]:
    """Forgetting and learning side by side, the Pareto front, and the paired tests on task gain."""
    gain = results.get("task_gain")
    if not gain:
        return ["", "## Forgetting and learning", "",
                "Task gain was not measured: the run's tasks have no eval split (recipe `n_eval`), or the cells "
                "were made by an lmforget that did not score it."]
    par, em = results["pareto"], (results.get("task_em_gain") or {}).get("methods", {})
    n = len(gain["tasks"])
    lines = ["", "## Forgetting and learning", "",
             f"Task gain = the decrease of the answer's NLL (nats/token) on the task's own eval examples, after "
             f"minus before fine-tuning (higher = learned more); exact-match gain = the change of the share of "
             f"greedy answers that match the gold one, where the gold answers are short (`replay.task_em_max_tokens`; "
             f"scope `replay.task_em_scope`). Over the {n} tasks with "
             "task gain for every method. On the Pareto front: no other method forgets less and learns at "
             "least as much (or learns more and forgets no more). Tests are paired across tasks; `gained more` "
             "counts the tasks where the method's gain exceeded the reference's.", "",
             "| method | forgetting | task gain | SEM | kept of none's gain | exact-match gain | Pareto front | "
             "vs none: diff [95% CI], Holm p, Wilcoxon p, gained more | vs random: diff [95% CI], Holm p, "
             "Wilcoxon p, gained more |", "|---|---:|---:|---:|---:|---:|---|---|---|"]

    for name, g in gain["methods"].items():
        kept = g.get("retained_vs_none")
        lines.append(f"| {name} | {_num(par['forgetting'][name])} | {_num(g['mean_gain'])} | "
                     f"{_num(g['sem_gain'], '.4f')} | {'n/a' if kept is None else f'{100 * kept:.1f}%'} | "
                     f"{_num(em[name]['mean_gain'], '+.3f') if name in em else 'n/a'} | "
                     f"{'**yes**' if name in par['front'] else ''} | {_paired(g.get('vs_none'), 'losses')} | "
                     f"{_paired(g.get('vs_random'), 'losses')} |")
    if em:
        em_tasks = results["task_em_gain"]["tasks"]
        lines += ["", f"Exact match was measured on {len(em_tasks)} of the {n} tasks: {', '.join(em_tasks)}.", "",
                  "| method | exact-match gain | vs none: diff [95% CI], Holm p, Wilcoxon p, gained more | "
                  "vs random: diff [95% CI], Holm p, Wilcoxon p, gained more |", "|---|---:|---|---|"]
        for name, g in em.items():
            lines.append(f"| {name} | {_num(g['mean_gain'], '+.3f')} | {_paired(g.get('vs_none'), 'losses', '+.3f')} | "
                         f"{_paired(g.get('vs_random'), 'losses', '+.3f')} |")
    lines += ["", "![forgetting vs task gain](pareto.png)", "", "### Per task (answer-NLL gain)", "",
              "The share of none's gain above is a ratio of means, so tasks with large gains weigh most; the last "
              "row weighs tasks alike: the median over tasks of the method's gain / none's gain (tasks where none "
              "gained).", "", "| task | " + " | ".join(gain["methods"]) + " |",
              "|---|" + "---:|" * len(gain["methods"])]
    for t in gain["tasks"]:
        lines.append(f"| {t} | " + " | ".join(_num(g["per_task"][t], "+.3f") for g in gain["methods"].values()) + " |")
    if "none" in gain["methods"]:
        lines.append("| median share of none's | " + " | ".join(
            _num(g.get("median_task_retained_vs_none"), ".1%") for g in gain["methods"].values()) + " |")
    return lines


def render_report(results: dict) -> str:
    s = results["settings"]
    methods = results["methods"]
    n_tasks = len(results["tasks"])
    head = [
        f"# Replay study: {results['recipe']}",
        "",
        f"Model `{results['model']}`; previous run `{results['run']}`. {n_tasks} test task{'s' * (n_tasks != 1)}, "
        f"{results['n_upstream']} upstream examples: {results['n_heldout']} held out (never replayed, the "
        f"evaluation set), {results['n_pool']} in the replay pool. Replay rate {s['rate']:.4g} "
        f"(n_rep = floor(n_task x r) + 1, steps x (1 + r)); loss weighting `{s.get('loss_weighting', 'token')}` mean; "
        f"targeted strategy `{s['strategy']}`"
        f" (T = {s['temperature']}); offline reveal k = {s['reveal']}; online: {s['probes']} probes after "
        f"{100 * s['online_fraction']:.0f}% of the steps; seed {s['seed']}.",
        "",
        "Forgetting = mean NLL increase (nats/token) on the held-out set after fine-tuning, averaged over "
        "test tasks. Reductions are relative to the mean of no replay / random replay; tests are paired "
        "across tasks (two-sided), against random replay and against no replay; Holm p adjusts the t-test "
        "p-values within each family (every other method against random replay; every other method against "
        "no replay).",
        "",
        *([] if results.get("complete", True) else [
            f"**Interim report: {len(results['tasks'])} of {results['n_test_tasks']} test tasks have every "
            "method finished; the study is not complete and these numbers will change.**", ""]),
        "## Outcome",
        "",
        *_verdict(results),
        "",
        "## Per method",
        "",
        "| method | mean increase | SEM | vs none | vs random | method - random (95% bootstrap CI) | t-test p "
        "| Holm p | Wilcoxon p | lower than random | below 0? | replay share of loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, m in methods.items():
        test = m.get("vs_random", {})
        ci = test.get("ci") or [None, None]
        z = m.get("vs_zero") or {}
        ci_text = f"{_num(test.get('mean_difference'))} [{_num(ci[0])}, {_num(ci[1])}]" if test else ""
        zero = f"**yes** (p = {_num(z.get('t_p'), '.2g')})" if z.get("adaptation") else "no"
        head.append(f"| {name} | {_num(m['mean_increase'])} | {_num(m['sem_increase'], '.4f')} | "
                    f"{_pct(m.get('reduction_vs_none'))} | {_pct(m.get('reduction_vs_random'))} | {ci_text} | "
                    f"{_num(test.get('t_p'), '.3g')} | {_num(test.get('t_p_holm'), '.3g')} | "
                    f"{_num(test.get('wilcoxon_p'), '.3g')} | "
                    f"{test.get('wins', '') if test else ''}{'/' + str(test['n']) if test else ''} | {zero} | "
                    f"{_num(m.get('mean_replay_loss_share'), '.1%')} |")
    head += _vs_none_section(methods)
    head += _gain_section(results)
    head += ["", "## Diagnostics", "",
             "How forgotten the replayed examples were in the previous run (targeting should pick higher "
             "values than random), and how well the predicted row matched the run's row (Pearson r over the pool).",
             "", "| method | run forgetting of replayed examples | prediction r |", "|---|---:|---:|"]
    for name, m in methods.items():
        if name != "none":
            head.append(f"| {name} | {_num(m.get('mean_replay_run_forgetting'))} | "
                        f"{_num(m.get('mean_prediction_pearson'), '.3f')} |")
    run_mean = results.get("run_heldout_mean_increase")
    if run_mean is not None:
        none = methods.get("none", {}).get("mean_increase")
        changes = "the mixture data loader" + (" and the example-mean loss (a run trains with the token mean)"
                                               if s.get("loss_weighting") == "example" else "")
        head += ["", f"The previous run's rows on the same held-out examples: mean {_num(run_mean)} nats/token"
                 + (f" (the `none` arm here: {_num(none)})" if none is not None else "")
                 + f". They differ by the run-to-run noise of fine-tuning and by what the study changes for "
                 f"every arm: {changes}."]
    head += _quartile_section(results)
    head += ["", "## Per task (held-out NLL increase)", "",
             "| task | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for t in results["tasks"]:
        head.append(f"| {t} | " + " | ".join(_num(methods[m]["per_task"][t]) for m in methods) + " |")
    head += ["", "![replay study](figure.png)", "",
             "Every number above is in `results.json`; each cell's replay set and learning rates are in its own "
             "record, `results/<task>/<method>.json`.", ""]
    return "\n".join(head)
