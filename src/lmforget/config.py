"""Typed recipes: one YAML file = one experiment (model, data, fine-tuning, scoring), with overrides.

A recipe is a path to a YAML file or the name of a shipped recipe (``src/lmforget/recipes/NAME.yaml``).
``key=value`` overrides use dotted paths (``finetune.steps=10``, ``tasks.flan.path=/data/flan``) and
YAML-typed values. Unknown keys are errors: a typo must never be silently ignored.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lmforget.data.specs import TaskSpec, UpstreamSpec
from lmforget.errors import LmforgetError
from lmforget.registry import one_of


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


# Field markers (`Annotated[type, MARKER]`), the one way a setting is kept out of a fingerprint
# (lmforget.identity). NOT_FINGERPRINTED: how the work is laid out (batching, memory, hardware) or identified
# under its own key, not what is computed, so a run or study resumes with another value. ADDED_LATER: a
# setting added after runs were made, fingerprinted only away from its default, so those runs keep theirs.
NOT_FINGERPRINTED = _Marker("NOT_FINGERPRINTED")
ADDED_LATER = _Marker("ADDED_LATER")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def science(self) -> dict:
        """The settings that decide what is computed: this section's fingerprinted part (see the markers)."""
        skip = {name for name, f in type(self).model_fields.items()
                if NOT_FINGERPRINTED in f.metadata or (ADDED_LATER in f.metadata and getattr(self, name) == f.default)}
        return self.model_dump(mode="json", exclude=skip)


class ModelConfig(_Strict):
    """Which model to start from; see `lmforget.models.load_model` for accepted names."""

    name: str
    # The dtype the weights are loaded in: auto = bf16 on a CUDA GPU with native bf16, fp32 elsewhere
    # (never the checkpoint's own dtype). Full fine-tuning always loads and trains fp32 master weights (and
    # scores the base from the same fp32 load; bf16 autocast on CUDA); LoRA trains fp32 adapters on the
    # base loaded at this dtype, frozen.
    dtype: str = "auto"
    device: str = "auto"
    revision: str | None = None
    trust_remote_code: bool = False  # only when the user asks (MPT on older transformers)
    # How tasks and chats are formatted: auto = the tokenizer's own template, `tulu` when it has none
    # (base models); or tulu / olmo-instruct / chatml / a .jinja file (lmforget.chat_templates).
    chat_template: str = "auto"
    # Seeds the random initial weights of a tiny model (`tiny:<arch>`), and nothing else: part of a tiny model's
    # identity only. (Recipes made before it was moved here set it as a top-level `seed:`, still read.)
    init_seed: int = 0

    def science(self) -> dict:
        out = super().science()
        if not self.name.startswith("tiny:"):
            del out["init_seed"]  # other models' weights are read, not drawn
        return out

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, value: str) -> str:
        from lmforget.chat_templates import check_choice

        return check_choice(value)


class LoraConfig(_Strict):
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


# What training computes beyond its settings, recorded in every run's fingerprints; bump it when the code
# changes that (a run is never finished with rows trained two ways). 1: loss on the answer only, weights
# trained in the checkpoint's dtype. 2: loss also on the end-of-turn/EOS tokens after the answer, fp32
# master weights with bf16 autocast on CUDA.
TRAINING_OBJECTIVE = 2


class FinetuneConfig(_Strict):
    """The paper's recipe knobs (docs/protocol.md section 3); defaults are the paper's."""

    method: Literal["full", "lora"] = "full"
    lr: float = 2e-6
    steps: int = Field(1000, ge=1)
    max_epochs: float = Field(3.0, gt=0)  # steps are capped at this many passes over the task
    warmup_steps: int = Field(10, ge=0)
    scheduler: str = "linear"
    effective_batch: int = Field(8, ge=1)  # examples per optimizer step, over all devices
    batch_size: Annotated[int, NOT_FINGERPRINTED] = Field(1, ge=1)  # per device; accumulation makes up the rest
    max_length: int = Field(1024, ge=2)  # keep the END of longer inputs
    optimizer: str = "auto"  # auto = adamw_bnb_8bit with bitsandbytes on CUDA, else adamw_torch (resolved per run)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: bool | Literal["auto"] = "auto"
    gradient_checkpointing: Annotated[bool, NOT_FINGERPRINTED] = False
    seed: int = 0
    lora: LoraConfig = Field(default_factory=LoraConfig)
    deepspeed: Annotated[str | None, NOT_FINGERPRINTED] = None  # a DeepSpeed JSON config path, for TrainingArguments
    # L2-SP: adds l2sp x ||theta - theta_0||^2 (sum over the trained weights) to the loss, a pull towards the
    # weights training starts from (full fine-tuning only). 0 = off.
    l2sp: Annotated[float, ADDED_LATER] = Field(0.0, ge=0)

    def grad_accum(self, world_size: int = 1) -> int:
        """Accumulation steps so that batch_size x devices x steps = effective_batch."""
        per_step = self.batch_size * world_size
        if self.effective_batch % per_step:
            raise LmforgetError(f"finetune.effective_batch={self.effective_batch} is not a multiple of "
                                f"finetune.batch_size={self.batch_size} x {world_size} device(s)")
        return self.effective_batch // per_step


class ScoreConfig(_Strict):
    """How upstream examples are scored before and after fine-tuning."""

    metric: Annotated[str, one_of("lmforget.matrix", "KINDS", "metric")] = "logppl"
    backend: Annotated[str, one_of("lmforget.scoring", "SCORERS", "scoring backend")] = "hf"
    max_length: int = Field(1024, ge=2)
    token_budget: Annotated[int, NOT_FINGERPRINTED] = Field(16384, ge=16)  # batching only
    batch_size: Annotated[int, NOT_FINGERPRINTED] = Field(64, ge=1)
    max_new_tokens: int = Field(512, ge=1)  # binary metric: greedy generation length
    # Scoring precision, separate from training: auto = bf16 on CUDA, fp32 on CPU. The base model and
    # every fine-tuned model are cast to it before scoring, so before and after are measured alike. Fingerprinted
    # resolved (auto -> bfloat16 or float32) under its own key, `score_dtype`.
    dtype: Annotated[str, one_of("lmforget.models", "DTYPES", "dtype"), NOT_FINGERPRINTED] = "auto"


class ExecutorConfig(_Strict):
    """Where the independent units (one per task row, replay cell, similarity measure) run.

    Not part of any fingerprint: a run started locally can be finished on a cluster and vice versa.
    """

    kind: Annotated[str, one_of("lmforget.executor", "KINDS", "executor")] = "local"
    address: str | None = None  # a running Ray cluster (host:port, ray://host:port, auto); None = start one
    gpus_per_task: float = Field(0, ge=0)  # > 1: the task's fine-tuning runs on that many Ray Train workers
    cpus_per_task: float = Field(1, gt=0)
    max_retries: int = Field(3, ge=0)  # retries after a worker dies or Ray kills it for memory (not after an error)
    max_concurrent: int | None = Field(None, ge=1)  # tasks in flight at once; None = as resources allow


class ReplayConfig(_Strict):
    """The replay study (docs/protocol.md section 6): which run supplies the rows, and the mixture knobs."""

    # a run directory made by `lmforget collect` with this recipe's model, data and scorer (identified by its
    # fingerprints, not its location)
    run: Annotated[str, NOT_FINGERPRINTED]
    test_tasks: list[str]  # tasks fine-tuned with replay (their rows in `run` serve oracle/offline)
    train_tasks: list[str] | None = None  # completer training rows; None = every other task of the run
    methods: Annotated[list[str], NOT_FINGERPRINTED] = Field(
        default_factory=lambda: ["none", "random", "oracle", "offline-mf", "online-mf"])
    heldout: int = Field(10000, ge=1)  # never replayed; the evaluation set
    rate: float = Field(1 / 32, gt=0, lt=1)  # replay share r: n_rep = floor(n_task * r) + 1
    # how targeted scores pick examples
    strategy: Annotated[str, one_of("lmforget.replay.selection", "STRATEGIES", "selection strategy")] = "softmax"
    temperature: float = Field(0.1, gt=0)
    mir_group: int = Field(30, ge=1)
    reveal: int = Field(30, ge=1)  # offline: revealed entries of the task's row
    probes: int = Field(30, ge=1)  # online: fixed probe examples scored mid-training
    online_fraction: float = Field(0.1, gt=0, lt=1)  # online: share of steps trained with random replay
    score_file: str | None = None  # CSV (task,)id,score for the `file` method
    # token mean (transformers' default) or example mean
    loss_weighting: Annotated[str, one_of("lmforget.replay.online", "LOSS_WEIGHTINGS", "loss weighting")] = "token"
    seed: int = 0
    # What replayed examples train (lmforget.replay.kl): nll = next-token loss on their stored tokens; kl =
    # KL(p_base || p_theta) at each of their trained positions, the base as its top `kl_top_k` log-probs
    # plus the rest as one bucket. Sets the default of method names without a `kl-`/`nll-` prefix.
    objective: Annotated[str, one_of("lmforget.replay.online", "OBJECTIVES", "replay objective"), ADDED_LATER] = "nll"
    kl_top_k: Annotated[int, ADDED_LATER] = Field(256, ge=1)
    # each replayed position's KL counts this many times in the loss (a method's +kl-weight@W overrides it)
    kl_weight: Annotated[float, ADDED_LATER] = Field(1.0, gt=0)
    # Task gain: exact match of greedy answers is measured on gold answers of at most this many tokens
    # (0 = never); the answer NLL always is, on every eval example. Scope "task": all of a task's eval
    # examples or none (none when any answer is longer); "example": the short-answer ones of every task.
    task_em_max_tokens: Annotated[int, ADDED_LATER] = Field(32, ge=0)
    task_em_scope: Annotated[Literal["task", "example"], ADDED_LATER] = "task"


class Recipe(_Strict):
    name: str = "recipe"
    description: str = ""
    model: ModelConfig
    upstream: UpstreamSpec
    tasks: dict[str, TaskSpec]  # named task sources (e.g. flan, tulu, dolly)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    replay: ReplayConfig | None = None
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @model_validator(mode="before")
    @classmethod
    def _top_level_seed(cls, data: Any) -> Any:
        """A top-level `seed:` (deprecated; older recipes and run manifests hold it) is `model.init_seed`: it
        only ever seeded a tiny model's initial weights."""
        if not isinstance(data, dict) or "seed" not in data:
            return data
        data = dict(data)
        seed = data.pop("seed")
        model = data.get("model")
        if isinstance(model, dict):
            if model.get("init_seed", seed) != seed:
                raise ValueError(f"seed={seed} and model.init_seed={model['init_seed']} differ; `seed` is the old "
                                 "name of model.init_seed: set only model.init_seed")
            data["model"] = {**model, "init_seed": seed}
        return data


def shipped_recipes() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("lmforget.recipes").iterdir() if p.name.endswith(".yaml"))


def _recipe_source(recipe: str, relative_to: Path | None = None) -> tuple[str, Path | None]:
    """(YAML text, the file's folder or None for a shipped recipe) of a recipe path or shipped name.

    A relative path in a recipe's `base:` is read relative to that recipe's folder."""
    path = Path(recipe).expanduser()
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise LmforgetError(f"recipe file not found: {path}")
        return path.read_text(encoding="utf-8"), path.resolve().parent
    shipped = resources.files("lmforget.recipes") / f"{recipe}.yaml"
    if not shipped.is_file():
        raise LmforgetError(f"unknown recipe {recipe!r}: not a file and not a shipped recipe "
                            f"({', '.join(shipped_recipes())})")
    return shipped.read_text(encoding="utf-8"), None


def merge(base: dict, child: dict) -> dict:
    """`child` over `base`: mappings merge key by key, anything else replaces. A null where the base
    has a mapping removes that entry (e.g. `tasks: {flan: null}` drops an inherited task source)."""
    out = dict(base)
    for key, value in child.items():
        if value is None and isinstance(out.get(key), dict):
            del out[key]
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_recipe(recipe: str, relative_to: Path | None = None, seen: tuple[str, ...] = ()) -> dict:
    """A recipe's mapping with its `base:` chain resolved (the base first, this recipe over it)."""
    text, folder = _recipe_source(recipe, relative_to)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise LmforgetError(f"recipe {recipe}: invalid YAML ({exc})".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise LmforgetError(f"recipe {recipe}: expected a mapping at the top level")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise LmforgetError(f"recipe {recipe}: 'base' must be a recipe name or path, got {base!r}")
    key = str((folder / base).resolve()) if folder is not None and Path(base).suffix in (".yaml", ".yml") else base
    if key in seen:
        raise LmforgetError(f"recipe {recipe}: 'base' chain loops ({' -> '.join((*seen, key))})")
    parent = _read_recipe(base, folder, (*seen, key))
    parent.pop("description", None)  # a recipe describes itself; name and description are never inherited
    parent.pop("name", None)
    return merge(parent, data)


def recipe_summary(recipe: str) -> dict:
    """Name, model and description of a recipe without validating it (paper recipes need paths)."""
    data = _read_recipe(recipe)
    model = (data.get("model") or {}).get("name", "")
    if not model and data.get("replay"):
        model = "(the run's)"
    return {"name": data.get("name", recipe), "model": model, "description": data.get("description", "")}


def parse_value(raw: str) -> Any:
    """The value of a command-line `key=value`, one grammar everywhere: JSON when it parses (so `1e-3`
    is a number, `true`/`null` what they say), else YAML (`[a, b]`, `{k: v}`), else the text as is."""
    if raw == "":
        return ""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_key_values(items: list[str], example: str) -> list[tuple[str, Any]]:
    """`key=value` arguments as (key, parsed value) pairs; `example` shows the expected form in errors."""
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise LmforgetError(f"{item!r}: expected key=value, e.g. {example}")
        out.append((key, parse_value(raw)))
    return out


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any]]:
    return [(key.split("."), value) for key, value in parse_key_values(overrides, "finetune.steps=10")]


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set dotted keys in a nested dict; a key that names nothing in the recipe is an error."""
    for parts, value in parse_overrides(overrides):
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict):
                raise LmforgetError(f"override {'.'.join(parts)}: {'.'.join(parts[:i])} is not a section")
            if part not in node:
                node[part] = {}
            node = node[part]
        if not isinstance(node, dict):
            raise LmforgetError(f"override {'.'.join(parts)}: {'.'.join(parts[:-1])} is not a section")
        node[parts[-1]] = value
    return data


def load_recipe_data(recipe: str, overrides: list[str] | None = None) -> dict:
    """A recipe's mapping, `base:` chain resolved and overrides applied, not yet validated."""
    data = _read_recipe(recipe)
    data.setdefault("name", Path(recipe).stem if Path(recipe).suffix in (".yaml", ".yml") else recipe)
    return apply_overrides(data, overrides or [])


def recipe_error(exc: ValidationError, recipe: str, prefix: str = "") -> LmforgetError:
    """One line naming the first bad key (`prefix` + its dotted path) of a recipe that failed validation."""
    err = exc.errors()[0]
    where = prefix + ".".join(str(p) for p in err["loc"])
    kind = "unknown recipe key" if err["type"] == "extra_forbidden" else "bad recipe value"
    msg = err["msg"].removeprefix("Value error, ")
    hint = f" (set it on the command line: {where}.path=PATH)" if "needs 'path'" in msg else ""
    return LmforgetError(f"recipe {recipe}: {kind}{f' {where!r}' if where else ''}: {msg}{hint}")


def validate_recipe(data: dict, recipe: str) -> Recipe:
    """A Recipe from its mapping; the error names the bad key and `recipe`."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise recipe_error(exc, recipe) from None


def load_recipe(recipe: str, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe (path or shipped name; `base:` resolved), apply overrides, validate; errors name the bad key."""
    data = load_recipe_data(recipe, overrides)
    if data.get("replay") and "model" not in data:
        raise LmforgetError(f"recipe {recipe} is a replay recipe: its model, data and fine-tuning come from its "
                            "run; run it with `lmforget replay` (lmforget.replay.study_setup.load_study_recipe)")
    return validate_recipe(data, recipe)


def recipe_from_dict(data: dict) -> Recipe:
    """Rebuild a recipe stored in a run manifest."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise LmforgetError(f"stored recipe is invalid: {exc.errors()[0]['msg']}") from None
