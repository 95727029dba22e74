"""lmforget: map, predict and mitigate what a language model forgets when it is fine-tuned."""

__version__ = "0.1.0"

from lmforget.errors import LmforgetError
from lmforget.matrix import ForgettingMatrix

__all__ = ["ForgettingMatrix", "LmforgetError", "__version__"]
