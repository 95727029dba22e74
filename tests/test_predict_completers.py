"""Conformance of every registered completer to the shared fit/predict contract."""

from __future__ import annotations

import numpy as np
import pytest

from lmforget.errors import LmforgetError
from lmforget.predict import complete_row, get_completer, list_completers
from lmforget.predict.synthetic import synthetic_matrix

ALL = list_completers()
FAST_PARAMS = {"logistic-mf": {"n_iter": 60}, "logistic-additive": {"n_iter": 60}}


def _data(name: str, seed: int = 0):
    fm = synthetic_matrix(m=12, n=60, seed=seed)
    Z = fm.Z.astype(np.float64)
    if get_completer(name).binary:
        Z = (Z > np.median(Z)).astype(np.float64)
    Z[2, 5] = np.nan  # a missing training entry
    train, test = Z[:9], Z[9:]
    R = np.full(test.shape, np.nan)
    cols = [1, 4, 7, 20, 33, 50]
    R[:, cols] = test[:, cols]
    R[1, 50] = np.nan  # rows with different reveal patterns in one block
    return train, test, R


def _make(name: str, **extra):
    return get_completer(name, **{**FAST_PARAMS.get(name, {}), **extra})


def test_registry_holds_the_issue_methods():
    for name in ("colmean", "additive", "knn", "mf", "logistic-additive", "logistic-mf", "lowrank"):
        assert name in ALL
    assert "logistic-mf" in list_completers("binary") and "mf" not in list_completers("binary")
    with pytest.raises(LmforgetError, match="unknown prediction method"):
        get_completer("nope")
    with pytest.raises(LmforgetError, match="no parameter"):
        get_completer("mf", bogus=1)


@pytest.mark.parametrize("name", ALL)
def test_init_stores_params_only_and_fit_returns_self(name):
    c = _make(name)
    assert not [k for k in vars(c) if k.endswith("_")]
    assert set(c.get_params()) == set(vars(c))
    train, _, _ = _data(name)
    assert c.fit(train) is c
    assert [k for k in vars(c) if k.endswith("_")]


@pytest.mark.parametrize("name", ALL)
def test_shapes_no_mutation_and_finite(name):
    train, test, R = _data(name)
    train0, R0 = train.copy(), R.copy()
    pred = _make(name).fit(train).predict(R)
    assert pred.shape == R.shape and pred.dtype == np.float64
    assert np.isfinite(pred).all()
    np.testing.assert_array_equal(train, train0)
    np.testing.assert_array_equal(R, R0)


def _fit_predict_under_global_seed(name: str, global_seed: int, **params) -> np.ndarray:
    """Predictions made after the global RNGs were seeded with `global_seed`: a completer that draws from
    them instead of its own `random_state` gives different predictions under different global seeds."""
    import random

    import torch

    random.seed(global_seed)
    np.random.seed(global_seed)
    torch.manual_seed(global_seed)
    train, _, R = _data(name)
    return _make(name, **params).fit(train).predict(R)


@pytest.mark.parametrize("name", ALL)
def test_predictions_depend_on_the_completers_own_seed_only(name):
    seed = {"random_state": 3} if "random_state" in get_completer(name).get_params() else {}
    np.testing.assert_array_equal(_fit_predict_under_global_seed(name, 1, **seed),
                                  _fit_predict_under_global_seed(name, 2, **seed))


# the completers whose random_state seeds real randomness, with the settings where it does (mf's default
# solver is a deterministic SVD)
SEEDED = {"logistic-mf": {}, "lowrank": {}, "mf": {"solver": "sgd", "n_epochs": 50}}


def test_every_seeded_completer_is_listed():
    assert {n for n in ALL if "random_state" in get_completer(n).get_params()} == set(SEEDED)


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_random_state_changes_the_predictions(name):
    """So the test above compares runs that a seed really decides."""
    a = _fit_predict_under_global_seed(name, 0, random_state=3, **SEEDED[name])
    b = _fit_predict_under_global_seed(name, 0, random_state=4, **SEEDED[name])
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", ALL)
def test_one_revealed_entry_and_all_revealed(name):
    train, test, _ = _data(name)
    c = _make(name).fit(train)
    one = np.full(test.shape, np.nan)
    one[:, 3] = test[:, 3]
    assert np.isfinite(c.predict(one)).all()
    full = c.predict(test)
    assert full.shape == test.shape and np.isfinite(full).all()
    none = c.predict(np.full(test.shape, np.nan))  # nothing revealed: the prior prediction
    assert np.isfinite(none).all()


@pytest.mark.parametrize("name", ALL)
def test_bad_inputs_are_input_errors(name):
    train, test, R = _data(name)
    bad = train.copy()
    bad[4] = np.nan
    with pytest.raises(LmforgetError, match="no measured entries"):
        _make(name).fit(bad)
    with pytest.raises(LmforgetError, match="not fitted"):
        _make(name).predict(R)
    c = _make(name).fit(train)
    with pytest.raises(LmforgetError, match="shape"):
        c.predict(R[:, :10])


@pytest.mark.parametrize("name", ["additive", "knn", "mf", "lowrank"])
def test_revealed_entries_move_predictions_toward_truth(name):
    fm = synthetic_matrix(m=30, n=400, seed=4)
    Z = fm.Z.astype(np.float64)
    train, test = Z[:24], Z[24:]
    cols = np.random.default_rng(0).choice(400, 40, replace=False)
    R = np.full(test.shape, np.nan)
    R[:, cols] = test[:, cols]
    rest = np.setdiff1d(np.arange(400), cols)
    base = get_completer("colmean").fit(train).predict(R)
    pred = get_completer(name).fit(train).predict(R)
    rmse = lambda p: np.sqrt(np.mean((p - test)[:, rest] ** 2))  # noqa: E731
    assert rmse(pred) < rmse(base)


def test_lowrank_picks_rank_by_cross_validation_and_beats_mf():
    n = 6000
    Z = synthetic_matrix(m=66, n=n, seed=1).Z.astype(np.float64)
    train, test = Z[:46], Z[46:]
    errs = {"mf": [], "lowrank": []}
    fitted = {name: get_completer(name).fit(train) for name in errs}
    for seed in range(10):
        cols = np.random.default_rng(seed).choice(n, 30, replace=False)
        R = np.full(test.shape, np.nan)
        R[:, cols] = test[:, cols]
        rest = np.setdiff1d(np.arange(n), cols)
        for name in errs:
            p = fitted[name].predict(R)
            errs[name].append(np.sqrt(np.mean((p - test)[:, rest] ** 2)))
    c = fitted["lowrank"]
    assert c.cv_scores_ and (c.rank_, c.noise_scale_, c.intercept_) == min(c.cv_scores_, key=c.cv_scores_.get)
    assert np.mean(errs["lowrank"]) < np.mean(errs["mf"])


def test_complete_row_keeps_revealed_values():
    fm = synthetic_matrix(m=10, n=50, seed=1)
    Z = fm.Z.astype(np.float64)
    row = np.full(50, np.nan)
    row[[3, 9]] = [0.5, -0.25]
    out = complete_row(Z[:8], row, method="mf", seed=0)
    assert out.shape == (50,) and out[3] == 0.5 and out[9] == -0.25 and np.isfinite(out).all()


def test_predict_package_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, lmforget.predict as p, lmforget.predict.protocol, lmforget.predict.forecast, "
            "lmforget.predict.reference_import; p.list_completers(); "
            "heavy = ('torch', 'transformers', 'lmforget.finetune', 'lmforget.scoring'); "
            "bad = [m for m in heavy if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("name,params,match", [
    ("mf", {"rank": -1}, "rank must be an integer >= 1"), ("mf", {"rank": 0}, "rank must be"),
    ("mf", {"rank": True}, "rank must be"), ("mf", {"solver": "als"}, "solver must be one of 'svd', 'sgd'"),
    ("knn", {"k": 0}, "k must be an integer >= 1"), ("knn", {"k": 2.5}, "k must be"),
    ("knn", {"k": 3, "min_k": 5}, "min_k must be at most k"), ("additive", {"lr": 0}, "lr must be a number > 0"),
    ("additive", {"reg": -1}, "reg must be a number >= 0"), ("additive", {"n_epochs": 0}, "n_epochs"),
    ("lowrank", {"cv_folds": 1}, "cv_folds"), ("lowrank", {"noise_scale": 0.0}, "noise_scale"),
    ("lowrank", {"intercept": "yes"}, "intercept"), ("lowrank", {"rank": -2}, "rank"),
    ("logistic-mf", {"rank": 0}, "rank"), ("logistic-additive", {"n_iter": 0}, "n_iter"),
    ("logistic-additive", {"l2": float("nan")}, "l2"),
])
def test_invalid_parameters_are_input_errors(name, params, match):
    with pytest.raises(LmforgetError, match=match):
        get_completer(name, **params)
    c = get_completer(name)
    c.set_params(**params)  # set after construction: fit checks again
    with pytest.raises(LmforgetError, match=match):
        c.fit(_data(name)[0])


def test_every_random_state_matters():
    """Deterministic completers take no random_state; for the others a different seed changes the fit."""
    assert "random_state" not in get_completer("additive").get_params()
    assert "random_state" not in get_completer("knn").get_params()
    assert "random_state" not in get_completer("logistic-additive").get_params()
    train, _, R = _data("mf")
    a, b = (get_completer("mf", solver="sgd", n_epochs=3, random_state=s).fit(train).predict(R) for s in (0, 1))
    assert not np.allclose(a, b)
    a, b = (get_completer("lowrank", random_state=s).fit(train).cv_scores_ for s in (0, 1))
    assert a != b
    train_b, _, _ = _data("logistic-mf")
    a, b = (get_completer("logistic-mf", n_iter=5, random_state=s).fit(train_b).col_factors_ for s in (0, 1))
    assert not np.allclose(a, b)


@pytest.mark.parametrize("name", ALL)
def test_predict_reports_entries_that_fell_back_to_the_prior(name):
    train, _, R = _data(name)
    train[:, 11] = np.nan  # a column no training row measured
    c = _make(name).fit(train)
    pred, fallback = c.predict(R, return_fallback=True)
    assert fallback.shape == R.shape and fallback.dtype == bool
    np.testing.assert_array_equal(pred, c.predict(R))
    assert fallback[:, 11].all()
    assert not fallback[:, [0, 2, 3, 12]].any()  # measured columns of rows with revealed entries
    assert not fallback[~np.isnan(R)].any()  # a revealed entry is known, never a fallback
    _, none = c.predict(np.full(R.shape, np.nan), return_fallback=True)
    assert none.all() if name != "colmean" else np.array_equal(none[0], np.isnan(train).all(axis=0))


def test_knn_reports_columns_with_too_few_neighbours():
    train, _, R = _data("knn")
    train[2:, 13] = np.nan  # only two training rows measured column 13
    c = get_completer("knn", k=3, min_k=3).fit(train)
    _, fallback = c.predict(R, return_fallback=True)
    assert fallback[:, 13].all() and not fallback[:, 12].any()
    assert not get_completer("knn", k=3, min_k=2).fit(train).predict(R, return_fallback=True)[1][:, 13].any()
