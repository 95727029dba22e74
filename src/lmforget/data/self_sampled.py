"""The `self-sampled` upstream format: contexts continued by the base model itself.

Drawing the continuations needs the model, so the data layer cannot load this format alone: a recipe
(`lmforget collect`) or `lmforget.self_sampling.self_sampled_upstream(spec, model)` does. The spec's
fields (`contexts`, `context_sentences`, `new_tokens`, `model`) are validated in `data.specs`.
"""

from __future__ import annotations

from lmforget.data.registry import register_upstream
from lmforget.data.specs import UpstreamSpec
from lmforget.errors import LmforgetError


@register_upstream("self-sampled", own_location=True)
def read_upstream(spec: UpstreamSpec):
    raise LmforgetError("upstream format 'self-sampled' is drawn from a model: use it in a recipe "
                        "(lmforget collect) or call lmforget.self_sampling.self_sampled_upstream")
