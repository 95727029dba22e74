"""Splits, reveals, metrics, the evaluation loop and the `predict`/`forecast`/`import-reference` CLI."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from lmforget.cli import main
from lmforget.errors import LmforgetError
from lmforget.matrix import ForgettingMatrix
from lmforget.predict.protocol import FLAN_IN_DOMAIN_TEST, Split, evaluate, make_split, reveal_columns, row_ranks, score
from lmforget.predict.synthetic import synthetic_matrix


@pytest.fixture
def fm() -> ForgettingMatrix:
    return synthetic_matrix(m=14, n=300, seed=0, groups=(("flan", 8), ("tulu", 4), ("dolly", 2)))


@pytest.fixture
def zfile(tmp_path, fm):
    return fm.save(tmp_path / "Z.npz")


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lmforget: error:")
    return err[0]


# ------------------------------------------------------------------ splits
def test_split_specs(fm, tmp_path):
    s = make_split(fm, "group:tulu")
    assert s.test == [t for t in fm.tasks if t.startswith("tulu")] and len(s.train) == 10
    s = make_split(fm, "group:tulu", train_groups=["flan"])
    assert all(t.startswith("flan") for t in s.train) and len(s.train) == 8
    s = make_split(fm, "tasks:flan_task000,dolly_task013")
    assert s.test == ["flan_task000", "dolly_task013"] and "flan_task000" not in s.train
    a, b = make_split(fm, "random:0.3", seed=1), make_split(fm, "random:0.3", seed=1)
    assert a.test == b.test and len(a.test) == 4 and not set(a.test) & set(a.train)
    a.save(tmp_path / "s.json")
    again = make_split(fm, str(tmp_path / "s.json"))
    assert (again.train, again.test) == (a.train, a.test)


def test_flan_in_domain_split_by_task_names():
    names = list(FLAN_IN_DOMAIN_TEST) + [f"other{i}" for i in range(46)]
    base = synthetic_matrix(m=66, n=50, seed=0)
    fm = ForgettingMatrix(Z=base.Z, tasks=[f"flan/{n}:1.0" for n in names], task_groups=["flan"] * 66,
                          examples=base.examples, example_sources=base.example_sources)
    s = make_split(fm, "flan-in-domain")
    assert len(s.test) == 20 and len(s.train) == 46 and s.test[0] == "flan/arc_easy:1.0"


@pytest.mark.parametrize("spec,match", [
    ("group:nope", "unknown task group"), ("tasks:flan_task000,ghost", "ghost"),
    ("random:1.5", "FRACTION"), ("bogus", "expected group"), ("flan-in-domain", "arc_easy"),
])
def test_bad_split_specs(fm, spec, match):
    with pytest.raises(LmforgetError, match=match):
        make_split(fm, spec)


def test_reveal_is_without_replacement_and_seeded():
    a = reveal_columns(100, 30, 3)
    assert len(set(a.tolist())) == 30 and np.array_equal(a, reveal_columns(100, 30, 3))
    assert not np.array_equal(a, reveal_columns(100, 30, 4))


# ----------------------------------------------------------------- metrics
def test_score_continuous_and_binary():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(3, 500))
    perfect = score(truth, truth, "logppl")
    assert perfect["rmse"] == 0 and perfect["spearman"] == pytest.approx(1) and perfect["top1_recall"] == 1
    noisy = score(truth, truth + rng.normal(size=truth.shape), "logppl")
    assert 0 < noisy["spearman"] < 1 and noisy["rmse"] == pytest.approx(1, abs=0.1)
    y = (truth > 1).astype(float)
    b = score(y, (truth + 0.1 > 1).astype(float) * 0.9, "binary")
    assert 0 < b["precision"] <= 1 and b["recall"] == 1 and 0.9 < b["auroc"] <= 1
    assert b["f1"] == pytest.approx(2 * b["precision"] * b["recall"] / (b["precision"] + b["recall"]))


@pytest.mark.parametrize("ties", [False, True])
def test_spearman_and_ranks_match_scipy(ties):
    from scipy.stats import rankdata, spearmanr

    rng = np.random.default_rng(1)
    truth = rng.normal(size=(5, 200))
    pred = truth + rng.normal(scale=1.5, size=truth.shape)
    if ties:  # rounding makes many ties: ranks must be averaged as scipy does
        truth, pred = np.round(truth, 1), np.round(pred, 0)
    want = np.mean([spearmanr(t, p).statistic for t, p in zip(truth, pred, strict=True)])
    assert score(truth, pred.copy(), "logppl")["spearman"] == pytest.approx(want, abs=1e-12)
    np.testing.assert_allclose(row_ranks(pred), rankdata(pred, axis=1))
    np.testing.assert_allclose(row_ranks(truth), rankdata(truth, axis=1))


def test_evaluate_pools_seeds_and_drops_nan_columns(fm):
    fm.Z[0, 7] = np.nan
    s = make_split(fm, "group:tulu")
    ev = evaluate(fm, s, ["colmean", "additive", "mf", "lowrank"], observed=20, seeds=3)
    assert ev.dropped_columns == 1 and ev.n_columns == 299
    for res in ev.methods.values():
        assert len(res["per_seed"]) == 3 and res["rmse_std"] >= 0 and res["seconds"] > 0
        rm = [p["rmse"] for p in res["per_seed"]]
        assert res["rmse_mean"] == pytest.approx(np.mean(rm))
    assert len({round(v["rmse_mean"], 12) for v in ev.methods.values()}) == 4


def test_evaluate_rejects_k_too_large_and_nan_rows(fm):
    s = make_split(fm, "group:tulu")
    with pytest.raises(LmforgetError, match="not smaller"):
        evaluate(fm, s, ["additive"], observed=300, seeds=1)
    fm.Z[9] = np.nan
    with pytest.raises(LmforgetError, match="no measured entries"):
        evaluate(fm, s, ["additive"], observed=5, seeds=1)


# --------------------------------------------------------------------- CLI
def test_predict_cli_json_and_outputs(zfile, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["predict", str(zfile), "--split", "group:tulu", "--methods", "additive,knn,mf",
               "--observed", "20", "--seeds", "2", "--json", "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 0
    res = json.loads(captured.out)
    for m in ("additive", "knn", "mf"):
        assert {"rmse_mean", "rmse_std", "seconds"} <= set(res["methods"][m])
    assert "additive" in captured.err and "rmse" in captured.err
    split = json.loads((out / "split.json").read_text())
    assert len(split["test"]) == 4
    with np.load(out / "predictions.npz", allow_pickle=False) as npz:
        assert npz["pred_mf"].shape == (4, 300) and npz["revealed_columns"].shape == (20,)
    assert json.loads((out / "results.json").read_text())["methods"].keys() == res["methods"].keys()


def test_predict_cli_json_counts_fallbacks(zfile, capsys):
    args = ["predict", str(zfile), "--split", "group:tulu", "--train-groups", "dolly", "--methods", "knn,mf",
            "--observed", "20", "--seeds", "2", "--json"]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["methods"]["knn"]["n_fallback"] == 0 and res["methods"]["mf"]["n_fallback"] == 0
    # two training rows cannot give knn three neighbours: every scored entry is the baseline alone
    assert main(args + ["--param", "knn.k=3", "--param", "knn.min_k=3"]) == 0
    captured = capsys.readouterr()
    res = json.loads(captured.out)
    assert res["methods"]["knn"]["n_fallback"] == 2 * 4 * (300 - 20)
    assert [p["n_fallback"] for p in res["methods"]["knn"]["per_seed"]] == [4 * 280, 4 * 280]
    assert "prior alone" in captured.err and res["methods"]["mf"]["n_fallback"] == 0


def test_predict_cli_binary_reports_f1(tmp_path, fm, capsys):
    fm.Z = (fm.Z > np.median(fm.Z)).astype(np.float32)
    fm.kind = "binary"
    path = fm.save(tmp_path / "B.npz")
    rc = main(["predict", str(path), "--split", "group:tulu", "--methods", "logistic-additive,colmean",
               "--observed", "30", "--seeds", "2", "--json", "--param", "logistic-additive.n_iter=50"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and {"f1_mean", "f1_std", "auroc_mean", "seconds"} <= set(res["methods"]["logistic-additive"])


@pytest.mark.parametrize("args,match", [
    (["--split", "group:tulu", "--methods", "additive,nope"], "unknown prediction method"),
    (["--split", "group:nope"], "unknown task group"),
    (["--split", "tasks:ghost_task"], "ghost_task"),
    (["--split", "group:tulu", "--observed", "300"], "not smaller"),
    (["--split", "group:tulu", "--methods", "logistic-mf"], "binary"),
    (["--split", "group:tulu", "--train-groups", "nope"], "unknown task group"),
    (["--split", "group:tulu", "--methods", "mf", "--param", "mf.rank=-1"], "rank must be an integer >= 1"),
    (["--split", "group:tulu", "--methods", "knn", "--param", "knn.k=0"], "k must be an integer >= 1"),
])
def test_predict_cli_bad_input(zfile, tmp_path, capsys, args, match):
    out = tmp_path / "out"
    assert main(["predict", str(zfile), *args, "--seeds", "1", "-o", str(out)]) == 2
    assert match in _err_line(capsys)
    assert not out.exists()


def test_predict_cli_nan_only_row(tmp_path, fm, capsys):
    fm.Z[10] = np.nan
    path = fm.save(tmp_path / "Z.npz")
    assert main(["predict", str(path), "--split", "group:tulu", "--seeds", "1", "--methods", "additive"]) == 2
    assert "no measured entries" in _err_line(capsys)


def test_forecast_cli(zfile, fm, tmp_path, capsys):
    probe = tmp_path / "probe.csv"
    cols = [3, 50, 77, 120, 200]
    probe.write_text("id,forgetting\n" + "".join(f"ex{j},{fm.Z[13, j]:.6f}\n" for j in cols))
    out = tmp_path / "row.csv"
    assert main(["forecast", str(zfile), "--probe", str(probe), "-o", str(out), "--method", "mf", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_fallback"] == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "id,forgetting,observed" and len(lines) == 301
    first = lines[1 + 3].split(",")
    assert first[0] == "ex3" and first[2] == "1" and float(first[1]) == pytest.approx(fm.Z[13, 3], abs=1e-6)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,forgetting\nnot_an_example,0.1\n")
    out2 = tmp_path / "row2.csv"
    assert main(["forecast", str(zfile), "--probe", str(bad), "-o", str(out2)]) == 2
    assert "not an upstream example" in _err_line(capsys) and not out2.exists()
    assert main(["forecast", str(zfile), "--probe", str(probe), "-o", str(out2), "--method", "zzz"]) == 2
    assert "unknown prediction method" in _err_line(capsys) and not out2.exists()


# ---------------------------------------------------------- import-reference
def _release(tmp_path, protocol=4, split_obj=None):
    """Write a small release in the reference layout: *-ppl-inc.npy + .npy.meta + fpd split pickle."""
    rng = np.random.default_rng(0)
    root = tmp_path / "stats" / "olmo-1b"
    root.mkdir(parents=True)
    arr = rng.normal(size=(7, 40))
    np.save(root / "olmo-1b-ppl-inc.npy", arr)
    meta = {"flan": {"start": 0, "stop": 4, "tasks": ["a", "b", "c", "d"]},
            "tulu": {"start": 4, "stop": 6, "tasks": ["x", "y"]},
            "dolly": {"start": 6, "stop": 7, "tasks": None}}
    (root / "olmo-1b-ppl-inc.npy.meta").write_text(json.dumps(meta))
    if split_obj is None:
        train, test = [0, 2, 3], [1]
        split_obj = {
            "train_ocl_idxs": train, "test_ocl_idxs": test, "train_mat": arr[train], "test_mat": arr[test],
            "train_ocl_task_info": [{"cat": "flan", "name": "acd"[i], "split": "train"} for i in range(3)],
            "test_ocl_task_info": [{"cat": "flan", "name": "b", "split": "train"}],
            "pt_task_info": {"cat": "dolma", "names": None, "split": "train"},
        }
    with open(root / "fpd-split-olmo-1b-id.pkl", "wb") as fh:
        pickle.dump(split_obj, fh, protocol=protocol)
    return tmp_path / "stats", arr


@pytest.mark.parametrize("protocol", [2, 4])
def test_import_reference(tmp_path, protocol, capsys):
    src, arr = _release(tmp_path, protocol)
    out = tmp_path / "out"
    assert main(["import-reference", str(src), "-o", str(out), "--json"]) == 0
    fm = ForgettingMatrix.load(out / "olmo-1b" / "olmo-1b-ppl-inc.npz")
    np.testing.assert_allclose(fm.Z, arr.astype(np.float32))
    assert fm.tasks.tolist() == ["a", "b", "c", "d", "x", "y", "dolly_0"]
    assert fm.groups == ["flan", "tulu", "dolly"]
    split = Split.load(out / "olmo-1b" / "fpd-split-olmo-1b-id.json")
    assert split.train == ["a", "c", "d"] and split.test == ["b"]
    assert make_split(fm, str(out / "olmo-1b" / "fpd-split-olmo-1b-id.json")).test == ["b"]


class Evil:
    def __reduce__(self):
        return (print, ("owned",))


@pytest.mark.parametrize("payload", [Evil(), {"train_mat": Evil()}, {"x": __import__("collections").OrderedDict()}])
def test_import_reference_refuses_non_plain_pickles(tmp_path, capsys, payload):
    src, _ = _release(tmp_path, 4, split_obj=payload)
    out = tmp_path / "out"
    assert main(["import-reference", str(src), "-o", str(out)]) == 2
    captured = capsys.readouterr()  # read once: a second read would see nothing and could not fail
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lmforget: error:") and "only plain data" in err[0]
    assert "owned" not in captured.out + captured.err  # the payload's print never ran
    assert not out.exists()


def test_forecast_reports_columns_no_task_measured(fm, tmp_path, capsys):
    fm.Z[:, 5] = np.nan  # no earlier task measured example 5: its forecast is the prior alone
    path = fm.save(tmp_path / "Z.npz")
    probe = tmp_path / "probe.csv"
    probe.write_text("id,forgetting\n" + "".join(f"ex{j},{fm.Z[13, j]:.6f}\n" for j in (3, 50, 77)))
    assert main(["forecast", str(path), "--probe", str(probe), "-o", str(tmp_path / "row.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_fallback"] == 1
