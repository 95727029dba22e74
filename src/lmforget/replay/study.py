"""The replay study (docs/protocol.md section 6, the paper's Figure 5): fine-tune each test task with each
replay method and measure forgetting on held-out upstream examples that no mixture ever contains.

Inputs come from a previous run directory (`replay.run`): its upstream set defines the columns (the
held-out set and the pool are subsets of them), its rows give the oracle scores, the completers'
training rows and the revealed entries of the offline methods, and its base scores are the "before"
of every held-out NLL increase. The recipe must describe the same model, data and scorer as the run.

Layout of OUT_DIR::

    manifest.json                    settings + fingerprints (a different setting is refused)
    results/<task>/<method>.parquet  held-out scores after fine-tuning (id, nll, n_tokens, increase)
    results/<task>/<method>.json     the cell's numbers and replay set; written last = cell done
    results/<task>/<method>.error.json  a failed cell's error (removed when a re-run finishes it)
    progress.json                    the running driver's pid, host, cells and cells in flight (`lmforget status`)
    results.json, report.md, figure.png

Every (task, method) cell is written atomically and skipped when re-run, like `collect`.
Within a task every replaying method shares the mixture layout, sampler seed and step count, and
`online-*` starts from the very replay set `random` uses, so comparisons are paired.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from pydantic import ValidationError

from lmforget import __version__
from lmforget.atomic import finite, read_json, write_json
from lmforget.config import (
    TRAINING_OBJECTIVE,
    ExecutorConfig,
    Recipe,
    ReplayConfig,
    load_recipe_data,
    merge,
    recipe_error,
    validate_recipe,
)
from lmforget.data.types import TaskSet, UpstreamSet
from lmforget.errors import LmforgetError
from lmforget.identity import IDENTITY_VERSION, check_study, section_identity, study_settings
from lmforget.matrix import ForgettingMatrix
from lmforget.migrate import migrate
from lmforget.replay.heldout import HeldoutSplit, draw_probes, split_heldout
from lmforget.replay.layout import MANIFEST, cell_file
from lmforget.replay.methods import Method, parse_methods
from lmforget.replay.mixture import mixture_steps, n_replay
from lmforget.runs import Run, write_table
from lmforget.seeding import task_seed

Log = Callable[[str], None]
_SAME_AS_RUN = ("model", "upstream", "tasks", "finetune", "score")  # a study's are its run's


@dataclass
class Study:
    """A validated study: recipe, methods, the previous run's data and the held-out split."""

    recipe: Recipe
    cfg: ReplayConfig
    methods: list[Method]
    out: Path
    run: Run
    matrix: ForgettingMatrix
    upstream: UpstreamSet
    tasks: dict[str, TaskSet]
    split: HeldoutSplit
    base_nll: np.ndarray  # [N] base-model NLL of every column (NaN = undefined)
    probes: np.ndarray  # the online methods' fixed probe columns: never replayed by any method

    # ----------------------------------------------------------------- columns
    @property
    def defined(self) -> np.ndarray:
        return np.isfinite(self.base_nll)

    def pool(self, task: str) -> np.ndarray:
        """Pool columns replay may draw from for `task`: defined base score and defined run entry.

        The probes are left out for every method (not only the online ones), so the methods of a
        task draw from one pool and a probe's measured forgetting is never trained on.
        """
        row = self.matrix.Z[self.matrix.rows([task])[0]]
        ok = self.defined & np.isfinite(row)
        ok[self.probes] = False
        return self.split.pool[ok[self.split.pool]]

    def train_rows(self, task: str) -> np.ndarray:
        """The completer's training rows for `task` (never the task's own row)."""
        names = self.cfg.train_tasks if self.cfg.train_tasks is not None else list(self.matrix.tasks)
        names = [n for n in names if n != task]
        return self.matrix.Z[self.matrix.rows(names)].astype(np.float64)

    def task_seed(self, task: str) -> int:
        return task_seed(self.cfg.seed, task)

    def cell_path(self, task: str, method: Method, suffix: str) -> Path:
        return cell_file(self.out, task, method.name, suffix)

    def done(self, task: str, method: Method) -> bool:
        return self.cell_path(task, method, ".json").is_file()


# ----------------------------------------------------------------------- setup
def _check_run_matches(recipe: Recipe, run: Run) -> None:
    """Each section shared with the run must decide the numbers as the run's did (batching and hardware layout
    may differ)."""
    ran = run.recipe
    for name in _SAME_AS_RUN:
        if section_identity(ran, name) != section_identity(recipe, name):
            raise LmforgetError(f"recipe {recipe.name!r}: its {name!r} section differs from the one run "
                                f"{run.path} was made with; a replay study uses the run's model, data, "
                                "fine-tuning and scorer (drop the section, or point replay.run at a matching run)")


def _pin_to_run(recipe: Recipe, run: Run) -> Recipe:
    """The recipe scoring at the run's recorded precision, after checking that the run was trained the way
    this lmforget trains (the study's increases are measured against the run's base scores)."""
    fps = run.manifest.get("fingerprints", {})
    missing = [k for k in ("objective", "score_dtype") if k not in fps]
    if missing:
        raise LmforgetError(f"run {run.path} was made by an older lmforget that did not record its "
                            f"{' and '.join(missing)}; collect it again in a new directory")
    if fps["objective"] != TRAINING_OBJECTIVE:
        raise LmforgetError(f"run {run.path} was trained with training objective {fps['objective']}, this "
                            f"lmforget trains with {TRAINING_OBJECTIVE}; collect it again in a new directory")
    dtype = fps["score_dtype"]
    if recipe.score.dtype not in ("auto", dtype):
        raise LmforgetError(f"score.dtype={recipe.score.dtype} differs from the precision run {run.path} was "
                            f"scored at ({dtype}); drop it")
    return recipe.model_copy(update={"score": recipe.score.model_copy(update={"dtype": dtype})})


def _open_run(recipe_name: str, cfg: ReplayConfig) -> Run:
    path = Path(cfg.run).expanduser()
    if not (path / "manifest.json").is_file():
        make = f"lmforget demo -o {path}" if recipe_name == "replay-demo" else f"lmforget collect RECIPE -o {path}"
        raise LmforgetError(f"replay.run: {path} is not a run directory; make it first with `{make}` "
                            "(or set replay.run=DIR to an existing run)")
    return Run.open(path)


def load_study_recipe(recipe: str, overrides: list[str] | None = None) -> Recipe:
    """A replay recipe (path or shipped name) completed from its run: model, upstream data, tasks,
    fine-tuning and scoring are taken from the run's manifest, so a replay recipe needs only its
    `replay:` section. A section it (or an override) does state must equal the run's, else it is refused."""
    data = load_recipe_data(recipe, overrides)
    if not isinstance(data.get("replay"), dict):
        raise LmforgetError(f"recipe {data['name']!r} has no 'replay:' section; use a replay recipe such as "
                            "replay-demo or replay-tiny")
    try:
        cfg = ReplayConfig.model_validate(data["replay"])
    except ValidationError as exc:
        raise recipe_error(exc, recipe, prefix="replay.") from None
    run = _open_run(data["name"], cfg)
    ran = run.recipe.model_dump(mode="json")
    stated = {k: data[k] for k in _SAME_AS_RUN if k in data}
    rest = {k: v for k, v in data.items() if k not in _SAME_AS_RUN}
    full = validate_recipe({**merge({k: ran[k] for k in _SAME_AS_RUN}, stated), **rest}, recipe)
    _check_run_matches(full, run)
    return full


def open_study(recipe: Recipe, out: str | Path, methods: list[str] | str | None = None) -> Study:
    """Validate everything a study needs before any work (bad input -> LmforgetError)."""
    if recipe.replay is None:
        raise LmforgetError(f"recipe {recipe.name!r} has no 'replay:' section; use a replay recipe such as "
                            "replay-demo or replay-tiny")
    cfg = recipe.replay
    if recipe.score.metric != "logppl":
        raise LmforgetError("the replay study measures log-perplexity forgetting; set score.metric=logppl")
    chosen = parse_methods(methods if methods else cfg.methods, cfg.strategy, cfg.objective)
    run = _open_run(recipe.name, cfg)
    from lmforget.finetune import resolve_auto
    from lmforget.launch import units_on_cuda

    # `auto` fine-tuning settings resolved as collect resolved the run's (its manifest holds resolved ones)
    cuda = units_on_cuda(recipe, recipe.executor)
    recipe = recipe.model_copy(update={"finetune": resolve_auto(recipe.finetune, cuda)})
    _check_run_matches(recipe, run)
    recipe = _pin_to_run(recipe, run)
    matrix = run.matrix()
    upstream = run.upstream()
    tasks = {t.name: t for t in run.tasks()}
    finished = set(matrix.tasks.tolist())
    for name in cfg.test_tasks:
        if name not in tasks:
            raise LmforgetError(f"replay.test_tasks: {name!r} is not a task of run {run.path} "
                                f"(tasks: {', '.join(tasks)})")
        if name not in finished:
            raise LmforgetError(f"replay.test_tasks: task {name!r} is unfinished in {run.path}; "
                                "finish the run with `lmforget collect` first")
    if not cfg.test_tasks:
        raise LmforgetError("replay.test_tasks is empty")
    for name in cfg.train_tasks or []:
        if name not in finished:
            raise LmforgetError(f"replay.train_tasks: {name!r} is not a finished task of run {run.path}")
    base = run.base_scores()
    base_nll = base["nll"].to_numpy(np.float64)
    split = split_heldout(upstream.ids, cfg.heldout, cfg.seed)
    probes = draw_probes(split, cfg.probes, cfg.seed, np.isfinite(base_nll))
    study = Study(recipe, cfg, chosen, Path(out), run, matrix, upstream, tasks, split, base_nll, probes)
    _validate_cells(study)
    return study


def _validate_cells(study: Study) -> None:
    cfg = study.cfg
    if any(m.source == "file" for m in study.methods) and not cfg.score_file:
        raise LmforgetError("method 'file' needs replay.score_file=PATH (a CSV id,score[,task])")
    from lmforget.finetune import world_size

    if world_size() > 1:
        raise LmforgetError("the replay study runs in a single process (online swaps and scoring happen "
                            "between steps); launch it without accelerate/torchrun")
    for name in cfg.test_tasks:
        if len(study.train_rows(name)) == 0 and any(m.completer for m in study.methods):
            raise LmforgetError(f"no training rows left for task {name!r}; list replay.train_tasks")
        pool = study.pool(name)
        n_rep = n_replay(len(study.tasks[name].train), cfg.rate)
        if n_rep > len(pool):
            raise LmforgetError(f"task {name!r}: replay budget {n_rep} is larger than the replay pool "
                                f"({len(pool)} examples); lower replay.heldout or replay.rate")
        if any(m.source == "offline" for m in study.methods) and cfg.reveal > len(pool):
            raise LmforgetError(f"replay.reveal={cfg.reveal} is larger than the replay pool ({len(pool)})")


def _prepare_out(study: Study) -> None:
    """Create the study's directory, or check that an existing one was made with the same settings. Manifests of
    an older identity version (the study's, and its run's, whose fingerprints it records) are migrated first."""
    if migrate(study.run.path):
        study.run = Run.open(study.run.path)
    # the recipe's score dtype was pinned to the run's recorded precision by open_study
    settings = study_settings(study.recipe, study.run.manifest.get("fingerprints", {}))
    path = study.out / MANIFEST
    if path.is_file():
        migrate(study.out)
        check_study(study.out, read_json(path, "study manifest").get("settings", {}), settings)
        return
    if study.out.exists() and any(study.out.iterdir()):
        raise LmforgetError(f"{study.out} exists, is not empty and is not a replay study; choose a new -o directory")
    write_json(path, {"lmforget_version": __version__, "identity_version": IDENTITY_VERSION,
                      "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run": str(study.run.path),
                      "settings": settings})


# ------------------------------------------------------------------- one cell
def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Correlation of a predicted row with the run's true row (None when undefined)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return None
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _targeted(study: Study, task: str, method: Method, pool: np.ndarray, n_rep: int, seed: int) -> tuple:
    """(chosen columns, score of every pool column, extra record) for a static targeted method."""
    from lmforget.replay.scores import offline_scores, read_score_file
    from lmforget.replay.selection import select

    cfg = study.cfg
    true_row = study.matrix.Z[study.matrix.rows([task])[0]].astype(np.float64)
    extra: dict = {}
    if method.source == "oracle":
        row = true_row
    elif method.source == "offline":
        row, cols = offline_scores(study.train_rows(task), true_row, pool, cfg.reveal, method.completer, seed)
        extra["revealed"] = [study.upstream.examples[int(c)].id for c in cols]
        known = np.setdiff1d(pool, cols)
        extra["prediction_pearson"] = _pearson(row[known], true_row[known])
    else:  # file
        row = read_score_file(cfg.score_file, study.upstream.ids, task)
    usable = pool[np.isfinite(row[pool])]
    if n_rep > len(usable):
        raise LmforgetError(f"task {task!r}: only {len(usable)} pool examples have a score; need {n_rep}")
    picks = usable[select(method.strategy, row[usable], n_rep, seed=seed, temperature=cfg.temperature,
                          group=cfg.mir_group)]
    return picks, row, extra


def arm_finetune(ft, method: Method):
    """The fine-tuning settings of an arm: the recipe's, with its L2-SP strength or LoRA rank."""
    if method.l2sp:
        ft = ft.model_copy(update={"l2sp": method.l2sp})
    if method.lora_rank:
        ft = ft.model_copy(update={"method": "lora", "lora": ft.lora.model_copy(update={"r": method.lora_rank})})
    return ft


def task_eval_set(task: TaskSet) -> UpstreamSet | None:
    """The task's eval split as examples to score (the answer is the scored part), or None without one."""
    from lmforget.data.types import UpstreamExample

    if not task.eval:
        return None
    return UpstreamSet([UpstreamExample(f"eval-{i}", messages=ex.messages, source=task.name)
                        for i, ex in enumerate(task.eval)], name=f"{task.name} eval")


def _em_tokens(tokenizer, examples: UpstreamSet, limit: int) -> int | None:
    """Greedy tokens to generate for exact match: the longest gold answer + 8, or None when an answer is
    longer than `limit` tokens (exact match of long answers says little; their NLL is still measured)."""
    longest = max(len(tokenizer(ex.gold, add_special_tokens=False)["input_ids"]) for ex in examples)
    return longest + 8 if limit and longest <= limit else None


def score_task(model, tokenizer, examples: UpstreamSet, study: Study, em_tokens: int | None) -> pd.DataFrame:
    """The task's eval examples under `model`: answer NLL (id, nll, n_tokens) and, with `em_tokens`,
    whether the greedy answer matches the gold one (`correct`)."""
    from lmforget.scoring.generate import generate_and_match
    from lmforget.scoring.upstream import score_upstream

    ft, score = study.recipe.finetune, study.recipe.score
    cfg = score.model_copy(update={"metric": "logppl", "max_length": ft.max_length})  # as long as training saw
    frame = score_upstream(model, tokenizer, examples, cfg, progress=False)
    if em_tokens:
        gens = generate_and_match(model, tokenizer, list(examples), max_new_tokens=em_tokens,
                                  max_length=ft.max_length, batch_size=score.batch_size)
        frame["correct"] = [g.correct for g in gens]
    return frame


def task_gain(before: pd.DataFrame, after: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per-example task scores before and after, and the cell's task-gain numbers (positive = learned)."""
    table = pd.DataFrame({"id": before["id"], "nll_before": before["nll"].to_numpy(np.float64),
                          "nll_after": after["nll"].to_numpy(np.float64), "n_tokens": before["n_tokens"]})
    rec = {"task_eval_n": int(np.isfinite(table["nll_before"]).sum()),
           "task_nll_before": float(np.nanmean(table["nll_before"])),
           "task_nll_after": float(np.nanmean(table["nll_after"])),
           "task_gain": float(np.nanmean(table["nll_before"] - table["nll_after"]))}
    if "correct" in before and "correct" in after:
        table["correct_before"] = before["correct"].to_numpy(bool)
        table["correct_after"] = after["correct"].to_numpy(bool)
        rec.update(task_em_before=float(table["correct_before"].mean()),
                   task_em_after=float(table["correct_after"].mean()))
        rec["task_em_gain"] = rec["task_em_after"] - rec["task_em_before"]
    return table, rec


@dataclass
class Cell:
    """One finished (task, method) cell: held-out scores, its record, the task's eval scores (or None)."""

    method: Method
    after: pd.DataFrame
    record: dict
    task_scores: pd.DataFrame | None = None


def run_cell(study: Study, task_name: str, method: Method, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """One cell alone: (held-out scores, record)."""
    cell = run_cells(study, task_name, [method], progress)[0]
    return cell.after, cell.record


def run_cells(study: Study, task_name: str, methods: list[Method], progress: bool = True) -> list[Cell]:
    """Fine-tune one task with one arm and score the held-out set and the task's eval split, once for the
    arm itself and once per WiSE-FT alpha among `methods` (which all share the arm: `Method.trained_as`).

    One unit of work for an executor: it writes no study file (`write_cell` does, in the driver).
    """
    from lmforget.finetune import build_train_set, free_memory, train
    from lmforget.models import load_recipe_model, training_dtype
    from lmforget.replay.mixture import ReplayMixture
    from lmforget.replay.selection import select_random
    from lmforget.scoring.upstream import score_upstream

    start = time.perf_counter()
    method = methods[0].training()
    if any(m.trained_as != method.name for m in methods):
        raise LmforgetError(f"{task_name}: methods {', '.join(m.name for m in methods)} do not share one arm")
    cfg = study.cfg
    ft = arm_finetune(study.recipe.finetune, method)
    task = study.tasks[task_name]
    seed = study.task_seed(task_name)
    pool = study.pool(task_name)
    if study.recipe.score.backend == "vllm":
        from lmforget.scoring.vllm import sleep_engine

        sleep_engine()  # the scoring engine gives the GPU back before this cell's model loads and trains
    model, tokenizer = load_recipe_model(study.recipe, dtype=training_dtype(study.recipe))  # as collect loads it
    task_items = build_train_set(tokenizer, task, ft)
    n_rep = n_replay(len(task_items), cfg.rate) if method.replays else 0
    steps = mixture_steps(len(task_items), n_rep, ft, cfg.rate if method.replays else None)
    record: dict = {"task": task_name, "method": method.name, "source": method.source,
                    "completer": method.completer, "strategy": method.strategy if method.replays else None,
                    "objective": method.objective if method.replays else None,
                    "n_task": 0 if method.source == "replay-only" else len(task_items), "n_rep": n_rep,
                    "steps": steps, "loss_weighting": cfg.loss_weighting}
    record.update({k: v for k, v in (("l2sp", method.l2sp), ("lora_rank", method.lora_rank)) if v is not None})

    # before training: the task's eval split under the base model, and theta_0 for WiSE-FT
    evals = task_eval_set(task)
    em_tokens = _em_tokens(tokenizer, evals, cfg.task_em_max_tokens) if evals is not None else None
    task_before = score_task(model, tokenizer, evals, study, em_tokens) if evals is not None else None
    from lmforget.weightspace import interpolate, snapshot

    theta0 = snapshot(model) if any(m.wise_ft is not None for m in methods) else None

    true_row = study.matrix.Z[study.matrix.rows([task_name])[0]].astype(np.float64)  # the run's row
    random_picks = pool[select_random(len(pool), n_rep, seed)] if n_rep else pool[:0]
    callbacks = []
    picks, pick_scores = random_picks, np.full(n_rep, np.nan)
    if method.source in ("oracle", "offline", "file"):
        picks, row, extra = _targeted(study, task_name, method, pool, n_rep, seed)
        pick_scores = row[picks]
        record.update(extra)
    targets = None
    if method.replays and method.objective == "kl":  # the base distribution, once per example that may be replayed
        from lmforget.replay.kl import base_targets

        may_replay = pool if method.source == "online" else picks
        targets = base_targets(model, tokenizer, [study.upstream.examples[int(c)] for c in may_replay],
                               k=cfg.kl_top_k, max_length=ft.max_length)
        record["kl_top_k"] = cfg.kl_top_k
    # replay-only: random replay's examples and steps, without the task (a control for the replay gradient)
    mixture = ReplayMixture([] if method.source == "replay-only" else task_items,
                            [study.upstream.examples[int(c)] for c in picks], tokenizer,
                            ft.max_length, study.split.heldout_ids, targets=targets)
    switch = None
    if method.source == "online":
        from lmforget.replay.online import OnlineTarget, ReplaySwitch, switch_step

        probe_cols = study.probes
        target = OnlineTarget(
            upstream=study.upstream.examples, probe_cols=probe_cols, Z_train=study.train_rows(task_name),
            candidates=pool, completer=method.completer, strategy=method.strategy, n=n_rep, seed=seed,
            tokenizer=tokenizer, temperature=cfg.temperature, group=cfg.mir_group,
            score_options={"max_length": study.recipe.score.max_length,
                           "token_budget": study.recipe.score.token_budget,
                           "batch_size": study.recipe.score.batch_size})
        target.measure_base(model)  # before training, in this process: same scorer, device and precision
        switch = ReplaySwitch(mixture, switch_step(steps, cfg.online_fraction), target)
        callbacks.append(switch)
        record["initial_replay"] = [study.upstream.examples[int(c)].id for c in picks]
    from lmforget.replay.online import MixtureTrainer  # every method: the same loader, the same data order

    result = train(model, tokenizer, mixture, ft, max_steps=steps, callbacks=callbacks, progress=progress,
                   description=f"{task_name} / {method.name}",
                   trainer_cls=MixtureTrainer.weighted(cfg.loss_weighting, method.objective))
    share = mixture.replay_share()
    record.update(share)
    # the share of the training loss that replay took, under the loss weighting in use
    record["replay_loss_share"] = share["replay_token_share" if cfg.loss_weighting == "token"
                                        else "replay_example_share"]
    if switch is not None:
        if switch.switched_at is None:
            raise LmforgetError(f"{task_name} / {method.name}: the online switch never happened")
        record.update(switch_step=switch.switched_at, lr_at_switch=switch.lr_at_switch,
                      probe_mean_forgetting=target.record["probe_forgetting"], n_probes=target.record["n_probes"])
        pick_scores = np.array(target.record["chosen_scores"])
        picks = np.array(target.record["chosen"], dtype=np.int64)
        predicted = target.record["row"]
        record["prediction_pearson"] = _pearson(predicted[pool], true_row[pool])
    # what training read: after an online swap, slots read before it keep their first (random) examples
    trained = mixture.trained_replay_ids
    column = {ex.id: c for c, ex in enumerate(study.upstream.examples)}
    trained_cols = np.array([column[i] for i in trained], dtype=np.int64)
    if switch is not None:
        record["n_chosen_trained"] = len(set(trained) & set(mixture.replay_ids))
    # the evaluation set: held-out columns only (the mixture refused every one of them)
    study.split.check_replayable(list(dict.fromkeys(mixture.replay_ids + trained)))
    clash = set(mixture.replay_ids + trained) & {study.upstream.examples[int(c)].id for c in study.probes}
    if clash:
        raise LmforgetError(f"{task_name} / {method.name}: probe example {sorted(clash)[0]!r} was replayed")
    replay_scores = [None if not np.isfinite(v) else float(v) for v in pick_scores]
    record.update(
        run_heldout_mean_increase=float(np.nanmean(true_row[study.split.heldout])),
        replay=[{"id": i, "score": s} for i, s in zip(mixture.replay_ids, replay_scores, strict=True)],
        replay_trained=trained,
        # how forgotten the replay examples training read were in the run (targeting should pick high values)
        replay_run_forgetting=float(np.nanmean(true_row[trained_cols])) if len(trained_cols) else None,
        train_loss=result.train_loss, train_seconds=result.seconds, trained_steps=result.steps,
        learning_rates=[e["learning_rate"] for e in result.log if "learning_rate" in e])

    heldout = UpstreamSet([study.upstream.examples[int(c)] for c in study.split.heldout])
    theta1 = snapshot(result.model) if theta0 is not None else None  # before scoring casts it
    cells = []
    for m in sorted(methods, key=lambda m: m.wise_ft is not None):  # the arm itself first, then each alpha
        if m.wise_ft is not None:
            interpolate(result.model, theta0, theta1, m.wise_ft)
        after = score_upstream(result.model, tokenizer, heldout, study.recipe.score, progress)
        after["increase"] = after["nll"].to_numpy(np.float64) - study.base_nll[study.split.heldout]
        rec = {**record, "method": m.name, "heldout_mean_increase": float(np.nanmean(after["increase"])),
               "heldout_n": int(np.isfinite(after["increase"]).sum())}
        if m.wise_ft is not None:
            rec.update(wise_ft=m.wise_ft, trained_as=method.name)
        table = None
        if task_before is not None:
            table, gain = task_gain(task_before, score_task(result.model, tokenizer, evals, study, em_tokens))
            rec.update(gain)
        rec["seconds"] = time.perf_counter() - start
        cells.append(Cell(m, after, rec, table))
    result.model = model = theta0 = theta1 = None
    free_memory()  # this cell's model must not stay under the next one
    return cells


def write_cell(study: Study, task_name: str, method: Method, after: pd.DataFrame, record: dict,
               task_scores: pd.DataFrame | None = None) -> None:
    write_table(study.cell_path(task_name, method, ".parquet"), after)
    if task_scores is not None:
        write_table(study.cell_path(task_name, method, ".task.parquet"), task_scores)
    write_json(study.cell_path(task_name, method, ".json"), record)  # last: marks the cell done


# ----------------------------------------------------------------- the study
def run_study(recipe: Recipe, out: str | Path, methods: list[str] | str | None = None, *,
              progress: bool = True, log: Log = lambda s: None, executor: ExecutorConfig | None = None,
              report_only: bool = False) -> dict:
    """Run (or resume) the study and write results.json, report.md and figure.png.

    Each (task, method) cell is one unit of `executor` (default: the recipe's); cells are written here
    as they finish. Failed cells are reported together at the end; a re-run retries them.
    `report_only`: run nothing; write the results of the tasks whose cells are all finished (an interim
    report of a study still running; the report says how many tasks it covers).
    """
    from lmforget.executor import one_gpu_per_unit, open_executor
    from lmforget.launch import close_vllm_engine
    from lmforget.status import Tracker

    study = open_study(recipe, out, methods)
    if report_only:
        if not (study.out / MANIFEST).is_file():
            raise LmforgetError(f"{study.out}: no replay study here yet; run it without --report-only first")
        _prepare_out(study)  # refuses a recipe whose settings differ from the study's
        return write_results(study)
    _prepare_out(study)
    cells = [(t, m) for t in study.cfg.test_tasks for m in study.methods]
    todo = [(t, m) for t, m in cells if not study.done(t, m)]
    log(f"{len(study.cfg.test_tasks)} test tasks x {len(study.methods)} methods; held-out {len(study.split.heldout)}, "
        f"pool {len(study.split.pool)} of {len(study.upstream)} upstream examples; "
        f"{len(cells) - len(todo)} cells already done -> {study.out}")
    exe_cfg = one_gpu_per_unit(executor or recipe.executor)  # a cell trains and scores in one process
    # one unit per task x trained arm: an arm's WiSE-FT cells share its training (they cost only scoring)
    units: dict[str, tuple[str, list[Method]]] = {}
    for t, m in todo:
        units.setdefault(f"{t} / {m.trained_as}", (t, []))[1].append(m)
    cell_keys = {key: [f"{t} / {m.name}" for m in ms] for key, (t, ms) in units.items()}
    by_key = {f"{t} / {m.name}": (t, m) for t, m in todo}  # `lmforget status` splits keys at the last " / "
    failed: dict[str, str] = {}
    done = 0
    with open_executor(exe_cfg) as ex:
        tracker = Tracker(study.out, ex.kind, units=[f"{t} / {m.name}" for t, m in cells],
                          error_path=lambda key: study.cell_path(*by_key[key], ".error.json"))

        def started(key: str) -> None:
            for cell in cell_keys[key]:
                tracker.started(cell)

        try:
            shared = ex.put(study)  # once: matrix, upstream set and tasks travel to the object store one time
            work = [(key, (shared, t, ms, progress and ex.kind == "local")) for key, (t, ms) in units.items()]
            for out in ex.map(run_cells, work, on_start=started):
                if out.error is not None:
                    for cell in cell_keys[out.key]:
                        done += 1
                        failed[cell] = out.error
                        tracker.failed(cell, out.error, out.detail)
                        log(f"[{done}/{len(todo)}] {cell}: failed: {out.error}")
                    continue
                for c in out.value:
                    done += 1
                    t = by_key[f"{units[out.key][0]} / {c.method.name}"][0]
                    write_cell(study, t, c.method, c.after, c.record, c.task_scores)
                    tracker.finished(f"{t} / {c.method.name}")
                    rec = c.record
                    gain = "" if rec.get("task_gain") is None else f", task gain {rec['task_gain']:+.4f}"
                    log(f"[{done}/{len(todo)}] {t} / {c.method.name}: held-out NLL increase "
                        f"{rec['heldout_mean_increase']:+.4f}{gain} ({rec['n_rep']} replayed, {rec['steps']} steps, "
                        f"{rec['seconds']:.0f}s)")
        finally:
            tracker.close()
            close_vllm_engine()
    if failed:
        raise LmforgetError(f"{len(failed)} replay cell(s) failed: {', '.join(failed)} (errors in "
                            f"{study.out}/results/*/*.error.json; first: "
                            f"{next(iter(failed.values()))}); re-run the same command to retry them")
    return write_results(study)


def load_cells(study: Study) -> tuple[list[str], list[str], np.ndarray, dict]:
    """The tasks x methods table of held-out mean increases (complete tasks only) and every cell record."""
    names = [m.name for m in study.methods]
    records: dict = {}
    for t in study.cfg.test_tasks:
        for m in study.methods:
            p = study.cell_path(t, m, ".json")
            if p.is_file():
                records[(t, m.name)] = read_json(p, "cell record")
    tasks = [t for t in study.cfg.test_tasks if all((t, n) in records for n in names)]
    F = np.array([[records[(t, n)]["heldout_mean_increase"] for n in names] for t in tasks], dtype=np.float64)
    return tasks, names, F.reshape(len(tasks), len(names)), records


def _by_run_quartile(study: Study, tasks: list[str], names: list[str]) -> dict:
    """Each method's held-out increase within quartiles of what the previous run forgot (per task)."""
    from lmforget.replay.stats import by_reference_quantile

    ids = [study.upstream.examples[int(c)].id for c in study.split.heldout]
    reference = np.full((len(tasks), len(ids)), np.nan)
    values = np.full((len(tasks), len(names), len(ids)), np.nan)
    for i, t in enumerate(tasks):
        reference[i] = study.matrix.Z[study.matrix.rows([t])[0]][study.split.heldout]
        for j, n in enumerate(names):
            cell = pd.read_parquet(cell_file(study.out, t, n, ".parquet"), columns=["id", "increase"])
            values[i, j] = cell.set_index("id")["increase"].reindex(ids).to_numpy(np.float64)
    return by_reference_quantile(reference, values, names)


def _task_gain_results(tasks: list[str], names: list[str], records: dict, forgetting: dict) -> dict:
    """Task gain per method (answer NLL; exact match where measured) with paired tests, and the Pareto
    front of held-out forgetting against task gain. Empty for a study whose cells did not measure it."""
    from lmforget.replay.stats import pareto_front, summarize_gain

    out: dict = {}
    for key, metric in (("task_gain", "task_gain"), ("task_em_gain", "task_em_gain")):
        have = [t for t in tasks if all(records[(t, n)].get(metric) is not None for n in names)]
        if not have:
            continue
        G = np.array([[records[(t, n)][metric] for n in names] for t in have], dtype=np.float64)
        out[key] = summarize_gain(G, names, have)
    if "task_gain" in out:
        gain = out["task_gain"]
        mean_f = {n: float(np.mean([forgetting[n]["per_task"][t] for t in gain["tasks"]])) for n in names}
        out["pareto"] = {"tasks": gain["tasks"], "forgetting": mean_f,
                         "gain": {n: gain["methods"][n]["mean_gain"] for n in names},
                         "front": pareto_front(mean_f, {n: gain["methods"][n]["mean_gain"] for n in names})}
    return out


def write_results(study: Study) -> dict:
    from lmforget.atomic import write_text
    from lmforget.replay.plots import plot_study
    from lmforget.replay.report import render_report
    from lmforget.replay.stats import summarize

    tasks, names, F, records = load_cells(study)
    if not tasks:
        raise LmforgetError(f"{study.out}: no task has results for every method yet")
    summary = summarize(F, names, tasks)
    for n in names:  # diagnostics: was targeting aimed at examples the task really forgets? how much loss was replay?
        for key in ("replay_run_forgetting", "prediction_pearson", "replay_loss_share", "replay_token_share",
                    "replay_example_share"):
            vals = [records[(t, n)].get(key) for t in tasks]
            vals = [v for v in vals if v is not None]
            summary["methods"][n][f"mean_{key}"] = float(np.mean(vals)) if vals else None
    run_rows = [records[(t, names[0])].get("run_heldout_mean_increase") for t in tasks]
    run_rows = [v for v in run_rows if v is not None]
    results = {
        # the previous run's own rows on the held-out set: what the tasks forgot there, next to `none` here
        "run_heldout_mean_increase": float(np.mean(run_rows)) if run_rows else None,
        "recipe": study.recipe.name, "run": str(study.run.path), "model": study.recipe.model.name,
        "settings": study.recipe.replay.science(),
        "n_test_tasks": len(study.cfg.test_tasks), "complete": len(tasks) == len(study.cfg.test_tasks),
        "n_upstream": len(study.upstream), "n_heldout": int(len(study.split.heldout)),
        "n_pool": int(len(study.split.pool)), **summary,
        "by_run_quartile": _by_run_quartile(study, tasks, names),
        "cells": [records[(t, n)] for t in tasks for n in names],
    }
    results.update(_task_gain_results(tasks, names, records, results["methods"]))
    results = finite(results)
    write_json(study.out / "results.json", results)
    plot_study(results, study.out / "figure.png")
    if results.get("pareto"):
        from lmforget.replay.plots import plot_pareto

        plot_pareto(results, study.out / "pareto.png")
    write_text(study.out / "report.md", render_report(results))
    return results
