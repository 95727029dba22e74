"""Predicting forgetting of unseen tasks by matrix completion (docs/protocol.md section 5).

Library API:
    get_completer(name, **params) -> Completer      fit(Z_train) / predict(revealed)
    list_completers(kind=None) -> list[str]
    complete_row(Z_train, revealed_row, method, seed) -> np.ndarray
    evaluate(...) / make_split(...) in lmforget.predict.protocol
This package never imports torch, fine-tuning or scoring code.
"""

from lmforget.predict.base import COMPLETERS, Completer, complete_row, get_completer, list_completers, register

# The built-in completers add themselves to COMPLETERS when imported, here, once.
from lmforget.predict import additive, knn, logistic, lowrank, mf  # noqa: E402,F401  isort: skip

__all__ = ["COMPLETERS", "Completer", "complete_row", "get_completer", "list_completers", "register"]
