"""What each SVD component is made of: its top tasks, top examples, and over-represented sources.

For component k (sign fixed so its loadings sum >= 0), tasks are ranked by their left loading u_k and
examples by their right loading v_k. For each end of the example ranking ("top" = most positive,
"bottom" = most negative), every upstream source is tested for over-representation in the n_top
extreme examples against the remaining ones with a one-sided two-proportion z-test
(pooled variance, no continuity correction); p-values are also given Bonferroni-corrected over sources.
"""

from __future__ import annotations

import math

import numpy as np


def two_proportion_ztest(x1: np.ndarray, n1: int, x2: np.ndarray, n2: int) -> tuple[np.ndarray, np.ndarray]:
    """One-sided test of p1 > p2 for counts x1 of n1 and x2 of n2; returns (z, p) arrays.

    z = (p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2)) with the pooled p = (x1 + x2) / (n1 + n2);
    p = P(N(0,1) >= z). Where the pooled share is 0 or 1 the test is undefined: z = 0, p = 1.
    """
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = np.asarray(x2, dtype=np.float64)
    pooled = (x1 + x2) / (n1 + n2)
    se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (x1 / n1 - x2 / n2) / np.where(se > 0, se, 1.0), 0.0)
    p = np.array([0.5 * math.erfc(v / math.sqrt(2.0)) for v in np.atleast_1d(z)]).reshape(z.shape)
    return z, p


def source_enrichment(order: np.ndarray, example_sources: np.ndarray, n_top: int) -> list[dict]:
    """Test every source for over-representation among the first n_top examples of `order`."""
    n = len(order)
    labels, inverse = np.unique(example_sources, return_inverse=True)
    in_top = np.zeros(n, dtype=bool)
    in_top[order[:n_top]] = True
    total = np.bincount(inverse, minlength=len(labels))
    top = np.bincount(inverse[in_top], minlength=len(labels))
    rest = total - top
    z, p = two_proportion_ztest(top, n_top, rest, n - n_top)
    p_bonf = np.minimum(1.0, p * len(labels))
    rows = [{"source": str(lab), "n_top": int(t), "n_rest": int(r),
             "share_top": float(t / n_top), "share_rest": float(r / (n - n_top)) if n > n_top else 0.0,
             "z": float(zz), "p": float(pp), "p_bonferroni": float(pb)}
            for lab, t, r, zz, pp, pb in zip(labels, top, rest, z, p, p_bonf, strict=True)]
    rows.sort(key=lambda d: (-d["z"], d["source"]))
    return rows


def component_attribution(U: np.ndarray, V: np.ndarray, singular_values: np.ndarray,
                          tasks: np.ndarray, task_groups: np.ndarray,
                          examples: np.ndarray, example_sources: np.ndarray,
                          n_components: int, top: int = 10, top_share: float = 0.05) -> list[dict]:
    """Per component: loadings' extremes and source enrichment among its extreme examples.

    U [M, >=n_components] and V [>=n_components, N] are the left/right singular vectors.
    The enrichment sets hold n_top = max(10, ceil(top_share * N)) examples (at most N // 2).
    """
    n = V.shape[1]
    n_top = min(max(10, math.ceil(top_share * n)), n // 2)
    has_sources = n_top > 0 and len(np.unique(example_sources)) > 1
    out = []
    for k in range(n_components):
        u, v = U[:, k], V[k]
        t_order = np.argsort(-u, kind="stable")
        e_order = np.argsort(-v, kind="stable")
        comp = {
            "component": k + 1,
            "singular_value": float(singular_values[k]),
            "task_loadings": {str(t): float(x) for t, x in zip(tasks, u, strict=True)},
            "top_tasks": [{"task": str(tasks[i]), "group": str(task_groups[i]), "loading": float(u[i])}
                          for i in t_order[:top]],
            "bottom_tasks": [{"task": str(tasks[i]), "group": str(task_groups[i]), "loading": float(u[i])}
                             for i in t_order[::-1][:top]],
            "top_examples": [{"example": str(examples[j]), "source": str(example_sources[j]),
                              "loading": float(v[j])} for j in e_order[:top]],
            "bottom_examples": [{"example": str(examples[j]), "source": str(example_sources[j]),
                                 "loading": float(v[j])} for j in e_order[::-1][:top]],
        }
        if has_sources:
            comp["source_enrichment"] = {
                "n_extreme": n_top,
                "top": source_enrichment(e_order, example_sources, n_top),
                "bottom": source_enrichment(e_order[::-1], example_sources, n_top),
            }
        out.append(comp)
    return out
