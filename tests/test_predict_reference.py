"""Reference mode (solver="sgd") against scikit-surprise itself, and fast solvers against reference mode.

Tolerance: 1e-9 absolute. Our bias SGD runs the same update sequence through a linear-recurrence
filter, so only floating-point rounding differs; the SVD SGD repeats surprise's arithmetic order.
"""

from __future__ import annotations

import numpy as np
import pytest

from lmforget.predict import get_completer
from lmforget.predict.synthetic import synthetic_matrix

surprise = pytest.importorskip("surprise")
pd = pytest.importorskip("pandas")

EPOCHS = 150
TOL = 1e-9


def _problem():
    Z = synthetic_matrix(m=7, n=30, seed=2).Z.astype(np.float64)
    Z[1, 4] = np.nan  # a gap in the training rows changes surprise's item order: must still match
    train, test = Z[:6], Z[6]
    r = np.full(30, np.nan)
    cols = [2, 7, 11, 19, 23, 28]
    r[cols] = test[cols]
    return train, r


def _surprise_trainset(train, r):
    rows = [(f"u{i}", f"i{j}", float(v)) for i, row in enumerate(list(train) + [r])
            for j, v in enumerate(row) if not np.isnan(v)]
    df = pd.DataFrame(rows, columns=["u", "i", "r"])
    reader = surprise.Reader(rating_scale=(df.r.min(), df.r.max()))
    return surprise.Dataset.load_from_df(df, reader).build_full_trainset()


def _estimates(algo, n):
    test_user = f"u{6}"
    return np.array([algo.predict(test_user, f"i{j}", clip=False).est for j in range(n)])


def test_additive_sgd_matches_baseline_only():
    train, r = _problem()
    bsl = dict(method="sgd", n_epochs=EPOCHS, learning_rate=0.005, reg=0.02)
    ref = surprise.BaselineOnly(bsl_options=bsl, verbose=False).fit(_surprise_trainset(train, r))
    ours = get_completer("additive", solver="sgd", n_epochs=EPOCHS).fit(train).predict(r[None])[0]
    np.testing.assert_allclose(ours, _estimates(ref, 30), rtol=0, atol=TOL)


def test_mf_sgd_matches_seeded_svd():
    train, r = _problem()
    ref = surprise.SVD(n_factors=5, n_epochs=EPOCHS, lr_all=0.005, reg_all=0.0, init_std_dev=0.001,
                       random_state=7).fit(_surprise_trainset(train, r))
    ours = get_completer("mf", solver="sgd", n_epochs=EPOCHS, random_state=7).fit(train).predict(r[None])[0]
    np.testing.assert_allclose(ours, _estimates(ref, 30), rtol=0, atol=TOL)


def test_knn_sgd_matches_knn_baseline_on_unrevealed_entries():
    train, r = _problem()
    bsl = dict(method="sgd", n_epochs=EPOCHS, learning_rate=0.005, reg=0.02)
    ref = surprise.KNNBaseline(k=3, sim_options={"name": "msd", "user_based": True}, bsl_options=bsl,
                               verbose=False).fit(_surprise_trainset(train, r))
    ours = get_completer("knn", k=3, solver="sgd", n_epochs=EPOCHS).fit(train).predict(r[None])[0]
    unrevealed = np.isnan(r)
    np.testing.assert_allclose(ours[unrevealed], _estimates(ref, 30)[unrevealed], rtol=0, atol=TOL)


def test_fast_solvers_are_no_worse_than_reference_mode():
    """Default (closed form / SVD fold-in) vs the reference SGD, RMSE on unrevealed entries."""
    Z = synthetic_matrix(m=16, n=120, seed=3).Z.astype(np.float64)
    train, test = Z[:12], Z[12:]
    errs = {}
    for seed in range(2):
        cols = np.random.default_rng(seed).choice(120, 30, replace=False)
        R = np.full(test.shape, np.nan)
        R[:, cols] = test[:, cols]
        rest = np.setdiff1d(np.arange(120), cols)
        for name, ref in (("additive", {"solver": "sgd", "n_epochs": 300}),
                          ("knn", {"solver": "sgd", "n_epochs": 300})):
            for label, kw in (("fast", {}), ("ref", ref)):
                p = get_completer(name, **kw).fit(train).predict(R)
                errs.setdefault((name, label), []).append(np.sqrt(np.mean((p - test)[:, rest] ** 2)))
    for name in ("additive", "knn"):
        assert np.mean(errs[(name, "fast")]) <= np.mean(errs[(name, "ref")]) * 1.01
