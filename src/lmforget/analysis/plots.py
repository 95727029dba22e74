"""Figures of the low-rank analysis, drawn with matplotlib's object API on the Agg canvas (no pyplot state).

Heatmaps follow the paper's Figures 2/6/8: rows grouped by task group (groups in order of first
appearance, tasks within a group by mean forgetting), columns sorted by their mean, colours clipped
to +-clip on a diverging map centred at 0. A matrix with 10^5 columns is never drawn cell by cell:
sorted columns are averaged in contiguous bins (at most `max_bins`, about one per pixel), which is
exactly what a reader can see anyway. Every figure is written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforget.atomic import atomic_path

MAX_BINS = 1200
DPI = 130


@dataclass(frozen=True)
class Layout:
    """Row order, column order and column bins shared by the data heatmap and the component heatmaps."""

    row_order: np.ndarray
    col_order: np.ndarray
    bin_starts: np.ndarray  # start of each column bin in the sorted order
    bin_widths: np.ndarray
    group_names: list[str]
    group_bounds: list[tuple[int, int]]  # [start, stop) rows of each group in row order

    @property
    def n_bins(self) -> int:
        return len(self.bin_starts)

    def bin(self, Z: np.ndarray) -> np.ndarray:
        """Rows reordered, columns sorted and averaged per bin: [M, n_bins] float64."""
        sorted_z = Z[self.row_order][:, self.col_order]
        sums = np.add.reduceat(sorted_z.astype(np.float64, copy=False), self.bin_starts, axis=1)
        return sums / self.bin_widths[None, :]

    def bin_sorted(self, v: np.ndarray) -> np.ndarray:
        """A per-column vector sorted in decreasing order, averaged over the same bins: [n_bins]."""
        ordered = np.sort(v.astype(np.float64))[::-1]
        return np.add.reduceat(ordered, self.bin_starts) / self.bin_widths


def make_layout(Z: np.ndarray, task_groups: np.ndarray, max_bins: int = MAX_BINS) -> Layout:
    """Group rows, sort columns by mean forgetting (most forgotten left), bin columns to <= max_bins."""
    names = list(dict.fromkeys(task_groups.tolist()))
    row_mean = Z.mean(axis=1, dtype=np.float64)
    order, bounds = [], []
    for g in names:
        rows = np.flatnonzero(task_groups == g)
        rows = rows[np.argsort(-row_mean[rows], kind="stable")]
        bounds.append((len(order), len(order) + len(rows)))
        order.extend(rows.tolist())
    col_order = np.argsort(-Z.mean(axis=0, dtype=np.float64), kind="stable")
    n = Z.shape[1]
    n_bins = min(n, max_bins)
    edges = np.linspace(0, n, n_bins + 1).round().astype(np.int64)
    return Layout(np.asarray(order), col_order, edges[:-1], np.diff(edges).astype(np.float64), names, bounds)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def _heat_height(m: int) -> float:
    return float(np.clip(0.14 * m + 1.6, 3.0, 11.0))


def _draw_heat(fig, ax, data: np.ndarray, layout: Layout, tasks: np.ndarray, vmin: float, vmax: float,
               cmap: str, cbar_label: str, n_columns: int, show_xlabel: bool = True,
               order_text: str = "sorted by mean forgetting (most forgotten left)") -> None:
    im = ax.imshow(data, aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin, vmax=vmax)
    m = data.shape[0]
    for start, _ in layout.group_bounds[1:]:
        ax.axhline(start - 0.5, color="black", linewidth=1.2)
    centres = [(a + b - 1) / 2 for a, b in layout.group_bounds]
    if m <= 45:
        fs = 7 if m > 25 else 8
        ax.set_yticks(range(m), [str(tasks[i]) for i in layout.row_order], fontsize=fs)
        right = ax.secondary_yaxis("right")
        right.set_yticks(centres, [f"{g}" for g in layout.group_names], fontsize=9, fontweight="bold")
        right.tick_params(length=0)
    else:
        labels = [f"{g} ({b - a})" for g, (a, b) in zip(layout.group_names, layout.group_bounds, strict=True)]
        ax.set_yticks(centres, labels, fontsize=9, fontweight="bold")
        ax.tick_params(axis="y", length=0)
        ax.set_ylabel("tasks, grouped by task group")
    per_bin = n_columns / layout.n_bins
    ax.set_xticks([])
    if show_xlabel:
        how = f"; each pixel column averages ~{per_bin:.0f} examples" if per_bin > 1.5 else ""
        ax.set_xlabel(f"{n_columns:,} upstream examples, {order_text}{how}")
    cb = fig.colorbar(im, ax=ax, pad=0.01, fraction=0.04, extend="both" if cmap == "RdBu_r" else "neither")
    cb.set_label(cbar_label)


def forgetting_heatmap(path: Path, Z: np.ndarray, tasks: np.ndarray, layout: Layout, clip: float,
                       binary: bool, title: str) -> Path:
    """The forgetting matrix itself: the paper's Figure 2/6/8 view."""
    m, n = Z.shape
    fig = _figure(12, _heat_height(m))
    ax = fig.add_subplot()
    data = layout.bin(Z)
    if binary:
        _draw_heat(fig, ax, data, layout, tasks, 0.0, 1.0, "Reds", "share forgotten (1 = answer lost)", n)
    else:
        _draw_heat(fig, ax, data, layout, tasks, -clip, clip, "RdBu_r",
                   "NLL increase (nats/token)", n)
        title = f"{title}; colour clipped at ±{clip:g}"
    ax.set_title(title)
    return _save(fig, path)


def component_heatmaps(path: Path, Z: np.ndarray, tasks: np.ndarray, layout: Layout,
                       U: np.ndarray, V: np.ndarray, singular_values: np.ndarray,
                       energy_share: np.ndarray) -> Path:
    """Rank-1 reconstructions s_k u_k v_k^T of the first components.

    Rows keep the data heatmap's grouping, so a component's task pattern lines up with Figure 1;
    columns are sorted by the component's own example loading v_k (largest left), which is the only
    order in which a rank-1 pattern is visible at 10^5 columns.
    """
    m, n = Z.shape
    k = V.shape[0]
    fig = _figure(12, min(max(2.6, 0.06 * m + 1.8), 5.0) * k + 0.6)
    axes = fig.subplots(k, 1, squeeze=False)[:, 0]
    for i, ax in enumerate(axes):
        vb = layout.bin_sorted(V[i])
        data = singular_values[i] * np.outer(U[layout.row_order, i], vb)
        lim = float(np.quantile(np.abs(data), 0.99)) or 1.0
        _draw_heat(fig, ax, data, layout, tasks, -lim, lim, "RdBu_r", "σ·uᵢ·vⱼ (units of Z)", n,
                   show_xlabel=True, order_text="sorted by their loading on this component")
        ax.set_title(f"Component {i + 1}: σ = {singular_values[i]:.3g}, "
                     f"{100 * energy_share[i]:.1f}% of ‖Z‖² (rank-1 reconstruction σ·u·vᵀ)")
    fig.suptitle("Top SVD components of the forgetting matrix", fontsize=13)
    return _save(fig, path)


def r2_curves(path: Path, r2_overall: list[float], r2_groups: dict[str, list[float] | None],
              models: dict[str, float], title: str) -> Path:
    """R^2 of rank-k truncated SVD against the additive / task-only / example-only / multiplicative models."""
    fig = _figure(8, 5)
    ax = fig.add_subplot()
    ks = np.arange(1, len(r2_overall) + 1)
    ax.plot(ks, r2_overall, "o-", color="black", linewidth=2, label="rank-k SVD, all tasks")
    for (g, vals), color in zip(r2_groups.items(), _cycle(), strict=False):  # a palette longer than the groups
        if vals is not None and len(r2_groups) > 1:
            ax.plot(ks, vals, "s--", color=color, linewidth=1, markersize=4, alpha=0.85, label=f"rank-k SVD, {g} rows")
    styles = {"additive": ("tab:red", "-."), "example_only": ("tab:green", ":"), "task_only": ("tab:purple", ":")}
    labels = {"additive": "additive μ+aᵢ+bⱼ", "example_only": "example-only (column means)",
              "task_only": "task-only (row means)"}
    for key, (color, ls) in styles.items():
        ax.axhline(models[key], color=color, linestyle=ls, linewidth=1.6, label=f"{labels[key]}: {models[key]:.3f}")
    ax.plot([1], [models["multiplicative"]], "*", color="tab:orange", markersize=16, zorder=5,
            label=f"multiplicative (rank-1, no bias): {models['multiplicative']:.3f}")
    ax.set_xticks(ks)
    ax.set_xlabel("rank k of the approximation")
    ax.set_ylabel("R² (share of variance around the mean explained)")
    low = min(0.0, *[v for v in models.values()], *r2_overall)
    ax.set_ylim(low, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    return _save(fig, path)


def singular_value_plot(path: Path, singular_values: np.ndarray, energy: np.ndarray, title: str) -> Path:
    """Singular values (log scale) and the cumulative share of ||Z||^2 they carry."""
    fig = _figure(11, 4.2)
    a1, a2 = fig.subplots(1, 2)
    idx = np.arange(1, len(singular_values) + 1)
    from matplotlib.ticker import FuncFormatter

    a1.semilogy(idx, np.maximum(singular_values, 1e-12), "o-", markersize=3)
    plain = FuncFormatter(lambda y, _: f"{y:g}")
    a1.yaxis.set_major_formatter(plain)
    a1.yaxis.set_minor_formatter(plain)
    a1.set_xlabel("component index")
    a1.set_ylabel("singular value σₖ (log scale)")
    a1.set_title("Singular value spectrum")
    a1.grid(alpha=0.3, which="both")
    shown = min(len(energy), 30)
    a2.bar(idx[:shown], energy[:shown], color="tab:blue")
    a2.set_ylim(0, 1.02)
    a2.set_xlabel("number of components k")
    a2.set_ylabel("cumulative share of ‖Z‖² (uncentred)")
    a2.set_title(f"Energy in the first k components (k ≤ {shown})")
    a2.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    return _save(fig, path)


def logistic_f1_plot(path: Path, by_rank: list[dict], title: str) -> Path:
    """Reconstruction F1 (and precision, recall) of logistic MF by rank, for binary matrices."""
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    ranks = [d["rank"] for d in by_rank]
    for key, style in (("f1", "o-"), ("precision", "s--"), ("recall", "^--")):
        ax.plot(ranks, [d[key] for d in by_rank], style, label=key)
    ax.set_xticks(ranks)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("rank of σ(W H)")
    ax.set_ylabel("reconstruction score at threshold 0.5")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)


def _cycle():
    return ["tab:blue", "tab:cyan", "tab:olive", "tab:brown", "tab:pink", "tab:gray"] * 10
