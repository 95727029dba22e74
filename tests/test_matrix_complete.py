"""One cleaning policy (`ForgettingMatrix.complete`), applied identically by analysis, predict and similarity."""

from __future__ import annotations

import numpy as np
import pytest

from lmforget.analysis import analyze
from lmforget.data.types import TaskExample, TaskSet, UpstreamExample, UpstreamSet
from lmforget.errors import LmforgetError
from lmforget.matrix import ForgettingMatrix
from lmforget.predict.protocol import Split, prepare

M, N = 7, 40


def _matrix() -> ForgettingMatrix:
    """A task never measured (row 3), an example nothing of which was scored (column 5) and one entry
    missing in a measured row (row 1, column 11)."""
    rng = np.random.default_rng(0)
    Z = (rng.standard_normal((M, 2)) @ rng.standard_normal((2, N)) + 0.1 * rng.standard_normal((M, N)))
    Z[3, :] = np.nan
    Z[:, 5] = np.nan
    Z[1, 11] = np.nan
    return ForgettingMatrix(Z=Z, tasks=[f"t{i}" for i in range(M)], task_groups=["a"] * 4 + ["b"] * 3,
                            examples=[f"e{j}" for j in range(N)], example_sources=["s"] * N,
                            base_nll=np.arange(N, dtype=np.float32))


def test_complete_drops_never_measured_rows_then_incomplete_columns():
    matrix = _matrix()
    c, how = matrix.complete()
    rows = [i for i in range(M) if i != 3]
    cols = [j for j in range(N) if j not in (5, 11)]
    assert how.rows_dropped == ["t3"] and how.columns_dropped_nan == 2 and how.columns_available == N - 2
    assert how.rows.tolist() == rows and how.columns.tolist() == cols
    assert np.array_equal(c.Z, matrix.Z[np.ix_(rows, cols)]) and not np.isnan(c.Z).any()
    assert c.tasks.tolist() == [f"t{i}" for i in rows] and c.examples.tolist() == [f"e{j}" for j in cols]
    assert c.base_nll.tolist() == [float(j) for j in cols]


def test_column_subsample_is_seeded_and_drawn_from_complete_columns():
    matrix = _matrix()
    a, how = matrix.complete(columns=10, seed=3)
    b, _ = matrix.complete(columns=10, seed=3)
    other, _ = matrix.complete(columns=10, seed=4)
    assert a.shape == (M - 1, 10) and how.columns_available == N - 2
    assert a.examples.tolist() == b.examples.tolist() != other.examples.tolist()
    assert set(a.examples.tolist()) <= set(matrix.complete()[0].examples.tolist())
    assert how.columns.tolist() == sorted(how.columns.tolist())
    assert matrix.complete(columns=1000)[0].shape == (M - 1, N - 2)  # more than there are: all of them
    with pytest.raises(LmforgetError, match="at least 2"):
        matrix.complete(columns=1)


def _infinite(Z: np.ndarray) -> None:
    Z[0, 0] = np.inf


def _all_nan(Z: np.ndarray) -> None:
    Z[:] = np.nan


def _no_complete_column(Z: np.ndarray) -> None:  # two measured rows missing complementary halves
    Z[0, ::2] = np.nan
    Z[1, 1::2] = np.nan


@pytest.mark.parametrize(("edit", "message"), [(_infinite, "infinite value at row 0"), (_all_nan, "no measured entry"),
                                               (_no_complete_column, "no complete columns")])
def test_complete_refuses_what_it_cannot_clean(edit, message):
    matrix = _matrix()
    edit(matrix.Z)
    with pytest.raises(LmforgetError, match=message):
        matrix.complete()


def test_analysis_predict_and_similarity_see_the_same_entries(monkeypatch):
    matrix = _matrix()
    expected, how = matrix.complete(columns=20, seed=1)

    result = analyze(matrix, ranks=2, columns=20, seed=1)
    assert np.array_equal(result.cleaned.Z, expected.Z)
    assert result["input"]["rows_dropped_all_nan"] == ["t3"] and result["input"]["columns_dropped_nan"] == 2
    assert result["stats"]["share_positive"] == pytest.approx(float((expected.Z > 0).mean()))

    measured = [t for t in matrix.tasks.tolist() if t != "t3"]
    train, test, keep, dropped = prepare(matrix, Split(train=measured[:4], test=measured[4:]), observed=5)
    full = matrix.complete()[0]
    assert np.array_equal(np.vstack([train, test]), full.Z) and dropped == 2
    assert matrix.examples[keep].tolist() == full.examples.tolist()
    with pytest.raises(LmforgetError, match=r"t3 have no measured entries"):  # the split names it: refused
        prepare(matrix, Split(train=measured[:4], test=[*measured[4:], "t3"]), observed=5)

    import lmforget.analysis.similarity as similarity

    seen = {}

    def fake_embedding(model, tokenizer, upstream, tasks, **options):
        return np.zeros((len(tasks), len(upstream))), "fake"

    def fake_correlate(S, Z):
        seen["Z"] = Z
        return {}

    monkeypatch.setattr(similarity, "embedding_similarity", fake_embedding)
    monkeypatch.setattr(similarity, "correlate", fake_correlate)
    ups = UpstreamSet([UpstreamExample(id=str(e), text="x") for e in matrix.examples])
    tasks = [TaskSet(str(t), "a", [TaskExample.from_prompt("q", "a")]) for t in matrix.tasks]
    out = similarity.similarity_vs_forgetting(matrix, None, None, ups, tasks, measures=["embedding"], columns=20,
                                              seed=1)
    assert out["shape"] == list(expected.shape) and np.array_equal(seen["Z"], expected.Z)


def test_summary_is_the_complete_matrix(capsys):
    matrix = _matrix()
    c, _ = matrix.complete()
    s = matrix.summary()
    assert s["share_positive"] == pytest.approx(float((c.Z > 0).mean()))
    assert s["mean"] == pytest.approx(float(c.Z.mean(dtype=np.float64)))
    assert set(s["task_means"]) == set(c.tasks.tolist())  # the task never measured has no mean
