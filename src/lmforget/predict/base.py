"""The completer interface every prediction method shares, and the registry that names them.

A completer learns from the rows already measured (``fit(Z_train)``, NaN = missing) and then
fills in new rows from a few revealed entries (``predict(revealed)``, NaN = unknown). The shape
follows scikit-learn: ``__init__`` stores hyperparameters only, learned state ends in ``_``,
``fit`` returns ``self``; inputs are never modified. Hyperparameters are checked when the completer
is made and again at ``fit`` (a bad value is an input error, never silently reinterpreted).
``predict(revealed, return_fallback=True)`` also says which entries could only be predicted from the
prior (like Surprise's ``was_impossible``): a row with nothing revealed, a column no training row
measured, or (knn) a column with too few neighbours.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from lmforget.errors import LmforgetError
from lmforget.registry import Registry

COMPLETERS: Registry[type["Completer"]] = Registry("prediction method")


def register(name: str) -> Callable[[type["Completer"]], type["Completer"]]:
    """Class decorator: make a completer available by `name` (CLI `--methods`, `get_completer`)."""

    def deco(cls: type[Completer]) -> type[Completer]:
        cls.name = name
        return COMPLETERS.register(name)(cls)

    return deco


def list_completers(kind: str | None = None) -> list[str]:
    """Registered names; `kind='binary'` or `'logppl'` keeps those meant for that matrix kind."""
    names = COMPLETERS.names()
    if kind == "binary":
        return [n for n in names if COMPLETERS[n].binary or COMPLETERS[n].any_kind]
    if kind == "logppl":
        return [n for n in names if not COMPLETERS[n].binary]
    return names


def get_completer(name: str, **params: Any) -> "Completer":
    """A fresh, unfitted completer by registered name; unknown names are an input error."""
    cls = COMPLETERS.get(name)
    accepted = set(cls._param_names())
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise LmforgetError(f"method {name!r} has no parameter(s) {', '.join(unknown)}; "
                            f"it takes {', '.join(sorted(accepted))}")
    completer = cls(**params)
    completer.check_params()
    return completer


class Completer:
    """Base class: input checks, parameter handling, and the fit/predict contract."""

    name: ClassVar[str] = ""
    #: Meant for binary (0/1) matrices (logistic models).
    binary: ClassVar[bool] = False
    #: Also sensible on binary matrices although not logistic (e.g. column means).
    any_kind: ClassVar[bool] = False

    # ------------------------------------------------------------- params
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params: Any) -> "Completer":
        for key, value in params.items():
            if key not in self._param_names():
                raise LmforgetError(f"method {self.name!r} has no parameter {key!r}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def check_params(self) -> None:
        """Raise LmforgetError naming the first invalid hyperparameter (subclasses list their rules)."""

    def _bad(self, name: str, rule: str) -> LmforgetError:
        return LmforgetError(f"method {self.name!r}: {name} must be {rule}, got {getattr(self, name)!r}")

    def _check_int(self, name: str, low: int, optional: bool = False) -> None:
        value = getattr(self, name)
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise self._bad(name, f"an integer >= {low}" + (" or None" if optional else ""))

    def _check_float(self, name: str, low: float = 0.0, strict: bool = False, optional: bool = False) -> None:
        value = getattr(self, name)
        if optional and value is None:
            return
        ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
              and np.isfinite(value) and (value > low if strict else value >= low))
        if not ok:
            raise self._bad(name, f"a number {'>' if strict else '>='} {low:g}" + (" or None" if optional else ""))

    def _check_choice(self, name: str, choices: tuple) -> None:
        if getattr(self, name) not in choices:
            raise self._bad(name, "one of " + ", ".join(map(repr, choices)))

    # --------------------------------------------------------- fit/predict
    def fit(self, Z_train: np.ndarray) -> "Completer":
        """Learn from measured rows (rows x N, NaN = not measured). Returns self."""
        self.check_params()
        Z = check_matrix(Z_train, "Z_train")
        self.n_columns_ = Z.shape[1]
        self.unmeasured_columns_ = np.isnan(Z).all(axis=0)
        self._fit(Z)
        return self

    def predict(self, revealed: np.ndarray, return_fallback: bool = False):
        """Full predictions (rows x N, float64) for new rows given their revealed entries.

        With `return_fallback`, returns (predictions, fallback): fallback is a bool mask of the
        unrevealed entries that were predicted from the prior alone (no information about them).
        """
        if not hasattr(self, "n_columns_"):
            raise LmforgetError(f"{type(self).__name__} is not fitted; call fit(Z_train) first")
        R = check_revealed(revealed, self.n_columns_)
        if not return_fallback:
            return np.asarray(self._predict(R), dtype=np.float64)
        out, fallback = self._predict_with_fallback(R)
        if fallback.any():
            fallback &= np.isnan(R)
        return np.asarray(out, dtype=np.float64), fallback

    def _predict_with_fallback(self, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and the fallback mask; a completer whose fallback falls out of its own
        computation (knn's neighbour counts) overrides this to do the work once."""
        return self._predict(R), self._fallback(R)

    def _fallback(self, R: np.ndarray) -> np.ndarray:
        """Rows with nothing revealed and columns no training row measured carry no information."""
        empty_rows = np.isnan(R).all(axis=1)
        if not empty_rows.any() and not self.unmeasured_columns_.any():  # the usual case: nothing to mark
            return np.zeros(R.shape, dtype=bool)
        return empty_rows[:, None] | self.unmeasured_columns_[None, :]

    def _fit(self, Z: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict(self, R: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


# ------------------------------------------------------------------ checks
def check_matrix(Z: np.ndarray, what: str) -> np.ndarray:
    """A float64 copy of a training matrix; rows with nothing measured are an input error."""
    Z = np.array(Z, dtype=np.float64, copy=True)
    if Z.ndim != 2:
        raise LmforgetError(f"{what} must be 2-D (rows x examples), got shape {Z.shape}")
    if Z.shape[0] < 1 or Z.shape[1] < 1:
        raise LmforgetError(f"{what} is empty (shape {Z.shape})")
    if np.isinf(Z).any():
        raise LmforgetError(f"{what} holds infinite values; use NaN for entries not measured")
    empty = np.flatnonzero(np.isnan(Z).all(axis=1))
    if empty.size:
        raise LmforgetError(f"{what}: row(s) {', '.join(map(str, empty[:5]))} have no measured "
                            "entries (all NaN); drop them before fitting")
    return Z


def check_revealed(revealed: np.ndarray, n_columns: int) -> np.ndarray:
    """A float64 copy of revealed rows (rows x N, NaN = unknown)."""
    R = np.array(revealed, dtype=np.float64, copy=True)
    if R.ndim != 2 or R.shape[1] != n_columns:
        raise LmforgetError(f"revealed rows must have shape (rows, {n_columns}), got {R.shape}")
    if np.isinf(R).any():
        raise LmforgetError("revealed rows hold infinite values; use NaN for unknown entries")
    return R


def mask_groups(R: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Group rows by their pattern of revealed columns: yields (row indices, column indices).

    In the evaluation protocol every test row shares one pattern, so a block costs one solve.
    """
    mask = ~np.isnan(R)
    packed = np.packbits(mask, axis=1)
    _, inverse = np.unique(packed, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for g in range(inverse.max() + 1 if inverse.size else 0):
        rows = np.flatnonzero(inverse == g)
        yield rows, np.flatnonzero(mask[rows[0]])


def complete_row(Z_train: np.ndarray, revealed_row: np.ndarray, method: str = "lowrank",
                 seed: int = 0, return_fallback: bool = False, **params: Any):
    """Predict one full row from its revealed entries (NaN = unknown); revealed values are kept.

    The library entry point for callers that need one new task's forgetting (e.g. targeted replay).
    With `return_fallback`, returns (row, fallback mask) as `Completer.predict` does.
    """
    row = np.asarray(revealed_row, dtype=np.float64).reshape(1, -1)
    completer = get_completer(method, **params)
    if "random_state" in completer._param_names():
        completer.set_params(random_state=seed)
    pred, fallback = completer.fit(Z_train).predict(row, return_fallback=True)
    pred = pred[0]
    known = ~np.isnan(row[0])
    pred[known] = row[0, known]
    return (pred, fallback[0]) if return_fallback else pred
