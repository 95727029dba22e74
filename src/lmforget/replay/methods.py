"""Method names of the replay study: a replay arm, optionally with weight-space changes joined by ``+``.

Replay arm: ``none`` | ``random`` | ``replay-only`` | SOURCE[:STRATEGY] where SOURCE is ``oracle``, ``file``,
``offline-COMPLETER`` or ``online-COMPLETER`` (COMPLETER = a name of `lmforget.predict`) and
STRATEGY one of `selection.STRATEGIES` (default: the recipe's ``replay.strategy``).
Examples: ``oracle``, ``oracle:top``, ``offline-mf:mir``, ``online-knn``.
``replay-only`` is a control: fine-tuning on random replay's examples alone, with random's steps,
which shows what the replay gradient does by itself (at the base weights self-sampled replay
teaches nothing in expectation; a handful of samples replayed many times is memorised).

A replaying arm may name its objective (`lmforget.replay.kl`): ``kl-random``, ``kl-oracle:top``,
``kl-online-mf``, ``kl-replay-only`` train KL to the base model on the replayed examples; ``nll-random``
next-token loss; without a prefix, the recipe's ``replay.objective`` (default nll).

Weight-space changes (`lmforget.weightspace`), alone (= ``none`` + it) or after a replay arm with ``+``:
``l2-sp@LAMBDA`` (finetune.l2sp = LAMBDA), ``lora`` or ``lora@R`` (finetune.method = lora, rank R, default
16), ``wise-ft`` or ``wise-ft@ALPHA`` (the fine-tuned weights moved back to theta_0 + ALPHA (theta - theta_0),
default 0.5; post hoc: it shares its arm's training, see `Method.trained_as`). E.g. ``kl-random+wise-ft@0.5``.

A KL arm may set the weight of its KL term with ``+kl-weight@W`` (default ``replay.kl_weight``, 1): each
replayed position's KL counts W times, e.g. ``kl-random+kl-weight@10`` or ``kl-oracle+kl-weight@3+wise-ft@0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lmforget.errors import LmforgetError
from lmforget.replay.selection import STRATEGIES

LORA_RANK = 16  # the `lora` arm's rank
WISE_FT_ALPHA = 0.5  # the `wise-ft` arm's alpha


@dataclass(frozen=True)
class Method:
    name: str
    source: str  # none | random | replay-only | oracle | file | offline | online
    completer: str | None = None
    strategy: str = "random"
    objective: str = "nll"  # what replayed examples train: nll | kl
    l2sp: float | None = None  # finetune.l2sp for this arm
    lora_rank: int | None = None  # LoRA instead of full fine-tuning, at this rank
    wise_ft: float | None = None  # alpha of the post hoc weight interpolation
    kl_weight: float | None = None  # weight of the KL term (objective kl); None = the recipe's replay.kl_weight

    @property
    def replays(self) -> bool:
        return self.source != "none"

    @property
    def trained_as(self) -> str:
        """The name of the arm whose training this one shares: itself without ``+wise-ft``."""
        return trained_as(self.name)

    def training(self) -> "Method":
        """This arm without its post hoc interpolation (what is trained)."""
        return replace(self, name=self.trained_as, wise_ft=None)


def trained_as(name: str) -> str:
    """The arm whose training the arm `name` shares: `name` without ``+wise-ft`` (``wise-ft@a`` alone: none)."""
    return "none" if name.startswith("wise-ft") else name.split("+wise-ft")[0]


def _number(raw: str, part: str, kind=float):
    try:
        return kind(raw)
    except ValueError:
        raise LmforgetError(f"method part {part!r}: {raw!r} is not a{'n integer' if kind is int else ' number'}") \
            from None


_REQUIRED = {"kl-weight": ("kl_weight", "weight", "W", "10"), "l2-sp": ("l2sp", "lambda", "LAMBDA", "0.001")}


def _weight_space(part: str) -> dict | None:
    """The setting a part after the arm names (weight-space, or the KL weight; None: not one)."""
    head, at, value = part.partition("@")
    if head in _REQUIRED:  # a positive number that has no default
        field, what, symbol, example = _REQUIRED[head]
        if not at:
            raise LmforgetError(f"method part {head!r} needs its {what}: {head}@{symbol} (e.g. {head}@{example})")
        number = _number(value, part)
        if not number > 0:
            raise LmforgetError(f"method part {part!r}: the {what} must be > 0")
        return {field: number}
    if head == "lora":
        rank = _number(value, part, int) if at else LORA_RANK
        if rank < 1:
            raise LmforgetError(f"method part {part!r}: the LoRA rank must be >= 1")
        return {"lora_rank": rank}
    if head == "wise-ft":
        alpha = _number(value, part) if at else WISE_FT_ALPHA
        if not 0 <= alpha <= 1:
            raise LmforgetError(f"method part {part!r}: alpha must be in [0, 1]")
        return {"wise_ft": alpha}
    return None


def _replay_arm(raw: str, default_strategy: str, default_objective: str) -> dict:
    from lmforget.predict import list_completers

    objective = default_objective
    for prefix in ("kl-", "nll-"):
        if raw.startswith(prefix) and raw != "nll-":
            objective, raw = prefix[:-1], raw[len(prefix):]
            if raw == "none":
                raise LmforgetError(f"method {prefix}none: 'none' replays nothing, so it has no objective")
            break
    base, _, strategy = raw.partition(":")
    if base in ("none", "random", "replay-only"):
        if strategy:
            raise LmforgetError(f"method {raw!r}: {base!r} takes no strategy")
        return {"source": base, "strategy": "random", "objective": objective if base != "none" else "nll"}
    strategy = strategy or default_strategy
    if strategy not in STRATEGIES:
        raise LmforgetError(f"method {raw!r}: unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if base in ("oracle", "file"):
        return {"source": base, "strategy": strategy, "objective": objective}
    kind, _, completer = base.partition("-")
    completers = list_completers("logppl")
    if kind in ("offline", "online") and completer in completers:
        return {"source": kind, "completer": completer, "strategy": strategy, "objective": objective}
    raise LmforgetError(f"unknown replay method {raw!r}; choose none, random, replay-only, oracle, file, "
                        f"offline-NAME or online-NAME with NAME in {', '.join(completers)} "
                        f"(optionally :STRATEGY, one of {', '.join(STRATEGIES)}; kl- or nll- in front sets the "
                        "objective), or add l2-sp@LAMBDA, lora[@R], kl-weight@W, wise-ft[@ALPHA] with +")


def parse_method(name: str, default_strategy: str = "softmax", default_objective: str = "nll") -> Method:
    """A method from its name; an unknown name is an input error that lists the choices."""
    raw = name.strip()
    parts = raw.split("+")
    if any(not p for p in parts):
        raise LmforgetError(f"method {raw!r}: an empty part between '+' signs")
    fields: dict = {}
    first = _weight_space(parts[0])
    if first is None:
        fields.update(_replay_arm(parts[0], default_strategy, default_objective))
        rest = parts[1:]
    else:
        fields.update(source="none", strategy="random")
        rest = parts
    for part in rest:
        extra = _weight_space(part)
        if extra is None:
            raise LmforgetError(f"method {raw!r}: {part!r} is not l2-sp@LAMBDA, lora[@R], wise-ft[@ALPHA] or "
                                "kl-weight@W (the replay arm comes first)")
        if set(extra) & set(fields):
            raise LmforgetError(f"method {raw!r}: {part.partition('@')[0]!r} is given twice")
        fields.update(extra)
    if fields.get("l2sp") and fields.get("lora_rank"):
        raise LmforgetError(f"method {raw!r}: l2-sp applies to full fine-tuning, not to LoRA")
    if "kl_weight" in fields and fields.get("objective") != "kl":
        raise LmforgetError(f"method {raw!r}: kl-weight applies to an arm that replays with the KL objective "
                            "(kl-random, kl-oracle, ...)")
    if "wise_ft" in fields and not parts[-1].startswith("wise-ft"):
        raise LmforgetError(f"method {raw!r}: wise-ft comes last (it is applied after training)")
    return Method(raw, **fields)


def parse_methods(names: list[str] | str, default_strategy: str = "softmax",
                  default_objective: str = "nll") -> list[Method]:
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    if not names:
        raise LmforgetError("no replay method given")
    methods = [parse_method(n, default_strategy, default_objective) for n in names]
    seen: set[str] = set()
    for m in methods:
        if m.name in seen:
            raise LmforgetError(f"replay method {m.name!r} is listed twice")
        seen.add(m.name)
    return methods
