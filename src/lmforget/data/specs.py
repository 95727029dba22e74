"""Typed, small descriptions of where upstream and task data come from (embedded in recipes).

A spec names a source `format` (one adapter per source family), where the data lives (`path`,
or a hub `dataset`), and the few selection options the paper's setups need. Unknown keys are
errors, so a typo in a recipe never silently falls back to a default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lmforget.errors import LmforgetError
from lmforget.registry import one_of

# A format is a name in the adapter registries (lmforget.data.registry), which importing lmforget.data.load
# fills: a new adapter module registers its format there and nothing here changes.
UpstreamFormat = Annotated[str, one_of("lmforget.data.load", "UPSTREAM", "upstream format")]
TaskFormat = Annotated[str, one_of("lmforget.data.load", "TASKS", "task format")]


def _own_location(fmt: str) -> bool:
    """Whether the format finds its data itself (registered with own_location, e.g. MMLU reads the OLMo
    evaluation suite's copy when no folder is given), so `path` may be left out."""
    import lmforget.data.load  # noqa: F401  (importing it registers every adapter)
    from lmforget.data.registry import OWN_LOCATION

    return fmt in OWN_LOCATION


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(None, description="file, directory, glob, or save_to_disk directory")
    dataset: str | None = Field(None, description="Hugging Face hub name (needs network)")
    subset: str | None = Field(None, description="hub configuration name")
    split: str | None = Field(None, description="hub/saved split; MMLU: the CSV folder (default test)")
    seed: int = 0

    @model_validator(mode="after")
    def _one_location(self):
        fmt = self.format
        if self.path is not None and self.dataset is not None:
            raise ValueError("give either 'path' or 'dataset', not both")
        if self.path is None and self.dataset is None and not _own_location(fmt):
            raise ValueError(f"format {fmt!r} needs 'path' (local files) or 'dataset' (hub name)")
        return self


class UpstreamSpec(_Source):
    """Where the N upstream examples come from and how they are chosen and cut."""

    format: UpstreamFormat
    n: int | None = Field(None, ge=1, description="keep this many examples (all when unset)")
    select: Literal["random", "first"] = "random"
    fraction: float | None = Field(None, gt=0, le=1, description="keep each example with this seeded "
                                   "probability (a 1% sample: 0.01); with n, at most n of them")
    sources: list[str] | None = Field(None, description="keep only these source labels")
    min_chars: int = Field(0, ge=0, description="drop texts shorter than this (before selection)")
    chunk_words: int | None = Field(None, ge=1, description="split raw texts into chunks of this many words")
    max_chars: int | None = Field(None, ge=1)
    max_words: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1, description="cut with the model's tokenizer")
    name: str | None = None
    # self-sampled only: contexts continued by the base model itself (lmforget.self_sampling)
    contexts: "UpstreamSpec | None" = Field(None, description="self-sampled: where the contexts come from")
    context_sentences: int | None = Field(None, ge=1, description="self-sampled: keep a context's first sentences")
    new_tokens: int | None = Field(None, ge=1, description="self-sampled: exactly this many sampled tokens")
    model: str | None = Field(None, description="self-sampled: the sampling model (default: the recipe's)")
    samples: str | None = Field(None, description="self-sampled: a JSONL file that pins the drawn token ids; "
                                "read when present, written when missing (sampling is exact only for one "
                                "build and thread count, so keep this file to resume or reproduce elsewhere)")

    @model_validator(mode="after")
    def _self_sampled(self):
        own = {"contexts": self.contexts, "context_sentences": self.context_sentences,
               "new_tokens": self.new_tokens, "model": self.model, "samples": self.samples}
        if self.format != "self-sampled":
            bad = [k for k, v in own.items() if v is not None]
            if bad:
                raise ValueError(f"{bad[0]!r} applies to format 'self-sampled' only")
            return self
        if self.contexts is None or self.new_tokens is None:
            raise ValueError("format 'self-sampled' needs 'contexts' (an upstream spec) and 'new_tokens'")
        if self.contexts.format == "self-sampled":
            raise ValueError("the contexts of 'self-sampled' cannot themselves be self-sampled")
        fixed = {"path": self.path, "dataset": self.dataset, "n": self.n, "sources": self.sources,
                 "chunk_words": self.chunk_words, "max_chars": self.max_chars, "max_words": self.max_words,
                 "max_tokens": self.max_tokens}
        bad = [k for k, v in fixed.items() if v is not None]
        if bad:
            raise ValueError(f"format 'self-sampled': set {bad[0]!r} under 'contexts'")
        return self


    @model_validator(mode="after")
    def _fraction_is_random(self):
        if self.fraction is not None and self.select == "first":
            raise ValueError("'fraction' samples at random; it cannot be combined with select: first")
        return self


class TaskSpec(_Source):
    """Where a family of new tasks comes from, which tasks to keep, and how many examples."""

    format: TaskFormat
    tasks: list[str] | None = Field(None, description="task names to keep, in this order")
    max_tasks: int | None = Field(None, ge=1, description="seeded random choice of this many tasks")
    n_train: int | None = Field(None, ge=1, description="training examples per task (all when unset)")
    n_eval: int = Field(0, ge=0, description="held-out examples per task")
    group: str | None = Field(None, description="override the task group label")
    n_shots: int = Field(5, ge=0, description="MMLU: in-context examples from dev/")


def _error(kind: str, exc: ValidationError) -> LmforgetError:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
    return LmforgetError(f"{kind} spec: " + "; ".join(parts))


def _validated(cls: type[_Source], kind: str, obj: dict[str, Any] | _Source) -> Any:
    """Validate a dict into a spec of `cls`; problems become one LmforgetError line."""
    if isinstance(obj, cls):
        return obj
    try:
        return cls.model_validate(obj)
    except ValidationError as exc:
        raise _error(kind, exc) from None


def upstream_spec(obj: dict[str, Any] | UpstreamSpec) -> UpstreamSpec:
    return _validated(UpstreamSpec, "upstream", obj)


def task_spec(obj: dict[str, Any] | TaskSpec) -> TaskSpec:
    return _validated(TaskSpec, "task", obj)
