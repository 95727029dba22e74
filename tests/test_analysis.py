"""Low-rank analysis: R^2 against direct numpy computations, models, z-test, NaN policy, CLI contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from lmforget.analysis import analyze, lowrank, write_report
from lmforget.analysis.attribution import source_enrichment, two_proportion_ztest
from lmforget.cli import main
from lmforget.errors import LmforgetError
from lmforget.matrix import ForgettingMatrix


def make_matrix(Z: np.ndarray, kind: str = "logppl", seed: int = 0) -> ForgettingMatrix:
    m, n = Z.shape
    rng = np.random.default_rng(seed)
    groups = np.array(["flan"] * (m - m // 3) + ["tulu"] * (m // 3))
    return ForgettingMatrix(Z=Z, tasks=[f"t{i}" for i in range(m)], task_groups=groups,
                            examples=[f"e{j}" for j in range(n)],
                            example_sources=rng.choice(["cc", "wiki", "books"], n), kind=kind,
                            meta={"model": "test"})


def direct_r2(Z: np.ndarray, k: int) -> float:
    """R^2(k) straight from the definition with numpy's full SVD."""
    Z = Z.astype(np.float64)
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    Zk = (U[:, :k] * s[:k]) @ Vt[:k]
    return 1.0 - np.mean((Z - Zk) ** 2) / np.mean((Z - Z.mean()) ** 2)


def planted(m: int, n: int, rank: int, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
            + noise * rng.standard_normal((m, n))).astype(np.float32)


@pytest.mark.parametrize("shape", [(12, 300), (30, 40), (7, 7)])
def test_r2_matches_direct_svd_on_random_matrices(shape):
    Z = np.random.default_rng(1).standard_normal(shape).astype(np.float32) + 0.3
    result = analyze(make_matrix(Z), ranks=min(shape))
    for k, value in enumerate(result["r2_by_rank"], start=1):
        assert value == pytest.approx(direct_r2(Z, k), abs=1e-6)
    assert result["r2_by_rank"][-1] == pytest.approx(1.0, abs=1e-6)  # full rank reproduces Z


def test_planted_rank_is_recovered():
    Z = planted(20, 2000, rank=3, noise=1e-3)
    r2 = analyze(make_matrix(Z), ranks=6)["r2_by_rank"]
    assert r2[1] < 0.99  # rank 2 is not enough
    assert r2[2] > 1 - 1e-5  # rank 3 explains everything but the noise
    for k in range(1, 7):
        assert r2[k - 1] == pytest.approx(direct_r2(Z, k), abs=1e-6)


def test_spectrum_matches_numpy_svd_and_right_vectors():
    Z = planted(15, 500, rank=4, noise=0.1, seed=3)
    spec = lowrank.spectrum(Z)
    U, s, Vt = np.linalg.svd(Z.astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(spec.singular_values, s, rtol=1e-9)
    V = spec.right_vectors(Z, 4)
    for k in range(4):  # same vectors up to sign; our sign makes u sum non-negative
        assert spec.U[:, k].sum() >= 0
        assert abs(abs(spec.U[:, k] @ U[:, k]) - 1) < 1e-8
        assert abs(abs(V[k] @ Vt[k]) - 1) < 1e-8


def test_group_and_task_r2_match_direct_computation():
    Z = planted(9, 200, rank=2, noise=0.3, seed=5)
    matrix = make_matrix(Z)
    res = analyze(matrix, ranks=3)
    Zd = Z.astype(np.float64)
    U, s, Vt = np.linalg.svd(Zd, full_matrices=False)
    Z2 = (U[:, :2] * s[:2]) @ Vt[:2]
    rows = matrix.task_groups == "tulu"
    want = 1 - ((Zd[rows] - Z2[rows]) ** 2).mean() / ((Zd[rows] - Zd[rows].mean()) ** 2).mean()
    assert res["r2_by_rank_by_group"]["tulu"][1] == pytest.approx(want, abs=1e-6)
    want_t0 = 1 - ((Zd[0] - Z2[0]) ** 2).sum() / ((Zd[0] - Zd[0].mean()) ** 2).sum()
    assert res["r2_by_rank_by_task"]["t0"][1] == pytest.approx(want_t0, abs=1e-6)


def test_models_match_least_squares_formulas():
    rng = np.random.default_rng(2)
    Z = (rng.standard_normal((10, 1)) + rng.standard_normal((1, 80)) + 0.5 * rng.standard_normal((10, 80))
         ).astype(np.float32)
    models = analyze(make_matrix(Z), ranks=2)["models"]
    Zd = Z.astype(np.float64)
    mu, r, c = Zd.mean(), Zd.mean(1, keepdims=True), Zd.mean(0, keepdims=True)
    tot = ((Zd - mu) ** 2).sum()
    assert models["task_only"] == pytest.approx(1 - ((Zd - r) ** 2).sum() / tot, abs=1e-9)
    assert models["example_only"] == pytest.approx(1 - ((Zd - c) ** 2).sum() / tot, abs=1e-9)
    assert models["additive"] == pytest.approx(1 - ((Zd - r - c + mu) ** 2).sum() / tot, abs=1e-9)
    # the additive fit is the least-squares optimum: lstsq on the design matrix gives the same R^2
    m, n = Z.shape
    X = np.hstack([np.kron(np.eye(m), np.ones((n, 1))), np.kron(np.ones((m, 1)), np.eye(n))])
    beta, *_ = np.linalg.lstsq(X, Zd.ravel(), rcond=None)
    assert models["additive"] == pytest.approx(1 - ((Zd.ravel() - X @ beta) ** 2).sum() / tot, abs=1e-9)
    assert models["multiplicative"] == pytest.approx(direct_r2(Z, 1), abs=1e-6)


def test_two_proportion_ztest_matches_formula_and_chi_square():
    z, p = two_proportion_ztest(np.array([30, 5]), 100, np.array([200, 250]), 1000)
    p1, p2, pool = 0.30, 0.20, 230 / 1100
    want = (p1 - p2) / math.sqrt(pool * (1 - pool) * (1 / 100 + 1 / 1000))
    assert z[0] == pytest.approx(want, rel=1e-12)
    assert p[0] == pytest.approx(sps.norm.sf(want), rel=1e-9)
    # z^2 is Pearson's chi-square of the 2x2 table without continuity correction
    chi2, p_two, *_ = sps.chi2_contingency([[30, 70], [200, 800]], correction=False)
    assert z[0] ** 2 == pytest.approx(chi2, rel=1e-9)
    assert 2 * p[0] == pytest.approx(p_two, rel=1e-9)
    assert z[1] < 0 and p[1] > 0.5


def test_source_enrichment_finds_the_planted_source():
    n = 2000
    rng = np.random.default_rng(0)
    sources = rng.choice(["a", "b", "c"], n)
    score = rng.standard_normal(n) + 3.0 * (sources == "b")
    rows = source_enrichment(np.argsort(-score), sources, 100)
    assert rows[0]["source"] == "b" and rows[0]["p_bonferroni"] < 1e-6
    assert all(r["p"] > 0.5 for r in rows if r["source"] != "b")


def test_components_name_tasks_and_examples_of_a_planted_factor():
    rng = np.random.default_rng(0)
    u = np.zeros(8)
    u[3] = 5.0
    v = np.zeros(300)
    v[17] = 4.0
    Z = (np.outer(u, v) + 0.01 * rng.standard_normal((8, 300))).astype(np.float32)
    comp = analyze(make_matrix(Z), ranks=2)["components"][0]
    assert comp["top_tasks"][0]["task"] == "t3"
    assert comp["top_examples"][0]["example"] == "e17"
    assert comp["top_tasks"][0]["loading"] > 0.99


def test_nan_policy_drops_columns_and_empty_rows():
    Z = planted(6, 50, rank=2, noise=0.1)
    Z[2, [4, 9]] = np.nan
    Z[5, :] = np.nan
    res = analyze(make_matrix(Z), ranks=2)
    assert res["input"]["rows_dropped_all_nan"] == ["t5"]
    assert res["input"]["columns_dropped_nan"] == 2
    assert res["input"]["analysed_shape"] == [5, 48]
    keep = np.setdiff1d(np.arange(50), [4, 9])
    assert res["r2_by_rank"][0] == pytest.approx(direct_r2(Z[:5][:, keep], 1), abs=1e-6)


def test_column_subsample_is_reproducible():
    matrix = make_matrix(planted(5, 400, rank=2, noise=0.5))
    a, _ = matrix.complete(columns=50, seed=7)
    b, _ = matrix.complete(columns=50, seed=7)
    c, _ = matrix.complete(columns=50, seed=8)
    assert a.Z.shape == (5, 50)
    assert (a.examples == b.examples).all() and not (a.examples == c.examples).all()


def test_logistic_mf_on_binary_matrix_fits_better_with_rank():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((20, 2)) @ rng.standard_normal((2, 150)) * 2
    Y = (logits > 0.8).astype(np.float32)
    res = analyze(make_matrix(Y, kind="binary"), ranks=3, logistic_ranks=3)
    f1 = [d["f1"] for d in res["logistic_mf"]["by_rank"]]
    assert len(f1) == 3
    # the pattern is the sign of a rank-2 matrix shifted by a constant: rank 3 without bias is exact
    assert f1[0] < 0.7 < f1[1]
    assert f1[2] > 0.99
    again = analyze(make_matrix(Y, kind="binary"), ranks=3, logistic_ranks=3)["logistic_mf"]["by_rank"]
    assert [d["f1"] for d in again] == f1  # seeded: identical


def test_binary_kind_with_non_binary_values_is_refused():
    with pytest.raises(LmforgetError, match="binary"):
        analyze(make_matrix(planted(4, 20, 1, 0.1), kind="binary"))


@pytest.mark.parametrize("Z, message", [
    (np.full((3, 10), np.nan, dtype=np.float32), "entirely NaN"),
    (np.ones((3, 10), dtype=np.float32), "constant"),
])
def test_degenerate_matrices_are_input_errors(Z, message):
    with pytest.raises(LmforgetError, match=message):
        analyze(make_matrix(Z))


def test_every_column_with_nan_is_an_input_error():
    Z = planted(3, 4, 1, 0.1)
    Z[0, [0, 1]] = np.nan
    Z[1, [2, 3]] = np.nan
    with pytest.raises(LmforgetError, match="no complete columns"):
        analyze(make_matrix(Z))


# --------------------------------------------------------------------------------- report + CLI
@pytest.fixture
def matrix_file(tmp_path):
    path = tmp_path / "Z.npz"
    make_matrix(planted(9, 400, rank=3, noise=0.2) * 0.1).save(path)
    return path


def test_report_writes_figures_json_and_markdown(tmp_path, matrix_file):
    matrix = ForgettingMatrix.load(matrix_file)
    result = analyze(matrix, ranks=4)
    report = write_report(result, tmp_path / "out")
    text = report.read_text()
    for fig in ("heatmap", "r2_by_rank", "singular_values", "components"):
        png = tmp_path / "out" / "figures" / f"{fig}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(figures/{fig}.png)" in text
    assert "| rank k | R² (all)" in text
    saved = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert saved["r2_by_rank"] == pytest.approx(result["r2_by_rank"])


def test_cli_json_contract(tmp_path, matrix_file, capsys):
    out = tmp_path / "out"
    assert main(["analyze", str(matrix_file), "-o", str(out), "--json", "--ranks", "4"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert len(obj["r2_by_rank"]) == 4
    assert set(obj["models"]) == {"additive", "multiplicative", "example_only", "task_only"}
    Z = ForgettingMatrix.load(matrix_file).Z
    assert obj["r2_by_rank"][0] == pytest.approx(direct_r2(Z, 1), abs=1e-6)
    assert json.loads((out / "analysis.json").read_text())["models"] == obj["models"]
    assert (out / "report.md").is_file()


def test_cli_column_subsample(tmp_path, matrix_file, capsys):
    args = ["analyze", str(matrix_file), "-o", str(tmp_path / "o"), "--json", "--columns", "100", "--seed", "3"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["input"]["analysed_shape"] == [9, 100]
    assert first["r2_by_rank"] == second["r2_by_rank"]


def _save_raw(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _good_arrays(m=3, n=5):
    return dict(Z=np.random.default_rng(0).standard_normal((m, n)).astype(np.float32),
                tasks=np.array([f"t{i}" for i in range(m)]), task_groups=np.array(["g"] * m),
                examples=np.array([f"e{j}" for j in range(n)]), example_sources=np.array(["s"] * n),
                kind=np.array("logppl"), meta=np.array("{}"))


@pytest.mark.parametrize("mutate, needle", [
    (lambda a: a.pop("examples"), "missing key"),
    (lambda a: a.update(Z=a["Z"].astype(np.int32)), "dtype"),
    (lambda a: a.update(tasks=np.array(["t0", "t1"])), "length"),
    (lambda a: a.update(Z=np.full((3, 5), np.nan, dtype=np.float32)), "NaN"),
    (lambda a: a.update(tasks=np.array(["t0", "t1", "t2"], dtype=object)), "unpickle"),
])
def test_cli_bad_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, mutate, needle):
    arrays = _good_arrays()
    mutate(arrays)
    path = tmp_path / "bad.npz"
    if any(v.dtype == object for v in arrays.values()):
        with open(path, "wb") as fh:
            np.savez(fh, allow_pickle=True, **arrays)
    else:
        _save_raw(path, **arrays)
    out = tmp_path / "out"
    assert main(["analyze", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
    assert not out.exists()


def test_cli_missing_and_corrupt_files(tmp_path, capsys):
    bad = tmp_path / "junk.npz"
    bad.write_bytes(b"not a zip")
    for path in (tmp_path / "absent.npz", bad):
        assert main(["analyze", str(path), "-o", str(tmp_path / "out")]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
