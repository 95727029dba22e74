"""The study figure, in the style of the paper's Figure 5: held-out forgetting per replay method.

Left: mean NLL increase on the held-out set per method (bar = mean over test tasks, whisker = SEM),
with each task's value as a dot joined across methods, so paired differences are visible.
Middle: per-task difference to random replay (below 0 = less forgetting than random), annotated
with the paired-test p-values. Right (when results hold it): each method's held-out increase by
quartile of how much the previous run forgot the example, which shows where replay acts.
Drawn with matplotlib's object API on the Agg canvas; written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmforget.atomic import atomic_path

DPI = 130
_COLOURS = {"none": "#9e9e9e", "random": "#5b8bd0", "oracle": "#2e7d32", "offline": "#ef6c00",
            "online": "#8e24aa", "file": "#6d4c41"}


def _colour(cell: dict) -> str:
    if cell.get("wise_ft") is not None or cell.get("l2sp") or cell.get("lora_rank"):
        return "#c62828"  # weight-space arms
    return _COLOURS.get(cell["source"], "#455a64")


def _fmt_p(p) -> str:
    return "n/a" if p is None or not np.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def plot_study(results: dict, path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = list(results["methods"])
    tasks = results["tasks"]
    sources = {c["method"]: c for c in results["cells"]}
    F = np.array([[results["methods"][m]["per_task"][t] for m in methods] for t in tasks])
    means = F.mean(axis=0)
    sem = np.array([results["methods"][m]["sem_increase"] for m in methods], dtype=float)
    x = np.arange(len(methods))
    has_random = "random" in methods
    quart = results.get("by_run_quartile")
    n_panels = 1 + has_random + bool(quart)
    fig = Figure(figsize=(max(7.5, min(6.0, 1.25 * len(methods)) * n_panels), 4.8), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    ax = axes[0]
    ax.bar(x, means, yerr=np.nan_to_num(sem), capsize=4, color=[_colour(sources[m]) for m in methods],
           alpha=0.85, edgecolor="black", linewidth=0.6, zorder=2)
    for row in F:
        ax.plot(x, row, color="black", alpha=0.25, linewidth=0.8, marker="o", markersize=3, zorder=3)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(x, methods, rotation=30, ha="right", fontsize=10)
    ax.set_ylabel("held-out NLL increase (nats/token)", fontsize=10)
    ax.set_title(f"forgetting on {results['n_heldout']} never-replayed examples\n"
                 f"({len(tasks)} test tasks; bar = mean, whisker = SEM)", fontsize=10)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    if has_random:
        ax2 = axes[1]
        j = methods.index("random")
        others = [m for m in methods if m != "random"]
        diffs = F[:, [methods.index(m) for m in others]] - F[:, [j]]
        xo = np.arange(len(others))
        ax2.axhline(0, color="black", linewidth=0.8)
        for k, m in enumerate(others):
            ax2.scatter(np.full(len(tasks), xo[k]), diffs[:, k], color=_colour(sources[m]), s=22,
                        edgecolor="black", linewidth=0.4, zorder=3)
            ax2.hlines(diffs[:, k].mean(), xo[k] - 0.3, xo[k] + 0.3, color="black", linewidth=1.5, zorder=4)
            test = results["methods"][m].get("vs_random", {})
            ax2.annotate(f"t p={_fmt_p(test.get('t_p'))}\nW p={_fmt_p(test.get('wilcoxon_p'))}",
                         (xo[k], 1.0), xycoords=("data", "axes fraction"), ha="center", va="top", fontsize=7.5)
        ax2.set_xticks(xo, others, rotation=30, ha="right", fontsize=10)
        ax2.set_ylabel("difference to random replay (nats/token)", fontsize=10)
        ax2.set_title("per task, vs random replay (< 0 = less forgetting)\npaired t-test / Wilcoxon p-values",
                      fontsize=10)
        lo, hi = np.nanmin(diffs, initial=0.0), np.nanmax(diffs, initial=0.0)
        pad = 0.35 * (hi - lo if hi > lo else 1e-3)
        ax2.set_ylim(lo - 0.1 * pad, hi + pad)
        ax2.set_xlim(-0.6, len(others) - 0.4)
        ax2.grid(axis="y", alpha=0.3, zorder=0)
    if quart:
        ax3 = axes[-1]
        xq = np.arange(1, quart["n_bins"] + 1)
        for k, (m, vals) in enumerate(quart["methods"].items()):
            ax3.plot(xq, vals, color=_colour(sources[m]), linestyle=("-", "--", ":", "-.")[k % 4], marker="o",
                     markersize=4, linewidth=1.4, label=m)
        ax3.axhline(0, color="black", linewidth=0.6)
        ax3.set_xticks(xq, [f"Q{b}" for b in xq])
        ax3.set_xlabel("quartile of the previous run's forgetting (Q1 least)", fontsize=10)
        ax3.set_ylabel("held-out NLL increase (nats/token)", fontsize=10)
        ax3.set_title(f"where replay acts\n(mean over {quart['n_tasks']} tasks)", fontsize=10)
        ax3.legend(fontsize=8, frameon=False)
        ax3.grid(alpha=0.3)
    fig.suptitle(f"replay study: {results['model']} ({results['recipe']})", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def place_labels(ax, points: list[tuple[float, float, str, bool]], fontsize: float = 8) -> list:
    """Label each point (x, y, text, bold) beside it without covering another label or point: four spots
    around the point are tried, then spots further away, nearest first, and the first free one inside the
    axes is taken (a thin line joins a label set apart to its point). Call after the layout is final: it
    works in display pixels. Returns the annotations, in the order of `points`."""
    ax.figure.canvas.draw()  # settles the view limits (autoscaling is lazy), so data maps to final pixels
    renderer = ax.figure.canvas.get_renderer()
    pt = ax.figure.dpi / 72  # pixels per point
    marks = [ax.transData.transform((x, y)) for x, y, _, _ in points]
    taken = [(mx - 5, my - 5, mx + 5, my + 5) for mx, my in marks]  # the markers themselves
    frame = ax.bbox

    def free(box) -> bool:
        inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
        return inside and all(box[2] <= b[0] or box[0] >= b[2] or box[3] <= b[1] or box[1] >= b[3] for b in taken)

    out = [None] * len(points)
    for i in sorted(range(len(points)), key=lambda i: -marks[i][1]):  # top to bottom
        x, y, text, bold = points[i]
        style = {"fontsize": fontsize, "fontweight": "bold" if bold else "normal", "ha": "left", "va": "bottom"}
        probe = ax.text(0, 0, text, **style)
        w, h = probe.get_window_extent(renderer).width, probe.get_window_extent(renderer).height
        probe.remove()
        (mx, my), gap = marks[i], 3
        near = [(gap + 3, gap), (gap + 3, -h - gap), (-w - gap - 3, gap), (-w - gap - 3, -h - gap)]
        # further spots: rows above and below, columns to the right and left, nearest first
        dxs = [gap + 3 + 30 * k for k in range(8)] + [-w - gap - 3 - 30 * k for k in range(8)]
        dys = [gap + k * (h + 1) for k in range(16)] + [-h - gap - k * (h + 1) for k in range(16)]

        # nearest first: by the distance from the point to the nearest point of the label's box
        far = sorted(((dx, dy) for dx in dxs for dy in dys if (dx, dy) not in near),
                     key=lambda d, w=w, h=h: float(np.hypot(max(d[0], 0, -(d[0] + w)), max(d[1], 0, -(d[1] + h)))))
        dx, dy = next(((dx, dy) for dx, dy in near + far if free((mx + dx, my + dy, mx + dx + w, my + dy + h))),
                      near[0])  # nowhere free (a very crowded plot): beside the point, as without this
        line = {} if (dx, dy) in near else {"arrowprops": {"arrowstyle": "-", "color": "0.55", "linewidth": 0.5,
                                                          "shrinkA": 0, "shrinkB": 4}}
        out[i] = ax.annotate(text, (x, y), xytext=(dx / pt, dy / pt), textcoords="offset points", zorder=4,
                             **style, **line)
        taken.append((mx + dx, my + dy, mx + dx + w, my + dy + h))
    return out


def plot_pareto(results: dict, path: str | Path) -> Path:
    """Held-out forgetting against task gain, one point per method (mean over tasks, whiskers = SEM), the
    Pareto front (forgets less for the same gain) joined by a line: "forgets less" vs "learned less"."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    par, gain = results["pareto"], results["task_gain"]["methods"]
    sources = {c["method"]: c for c in results["cells"]}
    tasks = par["tasks"]
    fig = Figure(figsize=(7.5, 5.5), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for m in par["forgetting"]:
        f = np.array([results["methods"][m]["per_task"][t] for t in tasks])
        f_sem = f.std(ddof=1) / np.sqrt(len(f)) if len(f) > 1 else 0.0
        g_sem = gain[m]["sem_gain"] if gain[m].get("sem_gain") is not None else 0.0  # None: one task
        kl = sources[m].get("objective") == "kl"
        ax.errorbar(par["gain"][m], par["forgetting"][m], xerr=g_sem, yerr=f_sem, fmt="s" if kl else "o",
                    color=_colour(sources[m]), markeredgecolor="black", markersize=7, capsize=3, zorder=3)
    front = sorted(par["front"], key=lambda m: par["gain"][m])
    ax.plot([par["gain"][m] for m in front], [par["forgetting"][m] for m in front], color="black",
            linewidth=1.0, linestyle="--", zorder=2, label="Pareto front")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlabel("task gain: decrease of the answer NLL on the task's eval split (nats/token)", fontsize=10)
    ax.set_ylabel("held-out forgetting: NLL increase (nats/token)", fontsize=10)
    ax.set_title(f"forgetting vs learning, {len(tasks)} test tasks (squares: KL replay)\n"
                 "better = right (learned more) and down (forgot less)", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    place_labels(ax, [(par["gain"][m], par["forgetting"][m], m, m in par["front"]) for m in par["forgetting"]])
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path
