"""A replay study's set-up: its recipe completed from the run it builds on, everything it needs validated
before any work (`open_study`), and its work directory (`prepare_out`). The study is `lmforget.replay.study`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from lmforget.config import (
    TRAINING_OBJECTIVE,
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
from lmforget.replay.methods import Method, parse_methods
from lmforget.replay.mixture import n_replay
from lmforget.runs import Run
from lmforget.seeding import task_seed
from lmforget.workdir import WorkDir, cell_file, open_or_create, read_manifest

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
    active: list[str]  # the test tasks this invocation runs (all of cfg.test_tasks unless --tasks chose some)

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
    if read_manifest(path) is None:
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


def open_study(recipe: Recipe, out: str | Path, methods: list[str] | str | None = None,
               tasks: list[str] | None = None, *, report_only: bool = False) -> Study:
    """Validate everything a study needs before any work (bad input -> LmforgetError).

    `tasks`: run only these of `replay.test_tasks` now (e.g. those whose rows the run has finished); the
    study's identity is unchanged, so a later run without it adds the other tasks' cells.
    `report_only`: the study only reads its cells back, so test tasks the run has not finished are skipped."""
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
    task_sets = {t.name: t for t in run.tasks()}
    finished = set(matrix.tasks.tolist())
    if not cfg.test_tasks:
        raise LmforgetError("replay.test_tasks is empty")
    if report_only:
        tasks = [t for t in cfg.test_tasks if t in finished]
    active = list(cfg.test_tasks) if tasks is None else list(dict.fromkeys(tasks))
    unknown = [t for t in active if t not in cfg.test_tasks]
    if unknown or (not active and not report_only):
        raise LmforgetError(f"--tasks: {', '.join(unknown) or 'no task given'}; choose among replay.test_tasks "
                            f"({', '.join(cfg.test_tasks)})")
    for name in active:
        if name not in task_sets:
            raise LmforgetError(f"replay.test_tasks: {name!r} is not a task of run {run.path} "
                                f"(tasks: {', '.join(task_sets)})")
        if name not in finished:
            raise LmforgetError(f"replay.test_tasks: task {name!r} is unfinished in {run.path}; "
                                "finish the run with `lmforget collect` first, or leave it out with --tasks")
    for name in cfg.train_tasks or []:
        if name not in finished:
            raise LmforgetError(f"replay.train_tasks: {name!r} is not a finished task of run {run.path}")
    base = run.base_scores()
    base_nll = base["nll"].to_numpy(np.float64)
    split = split_heldout(upstream.ids, cfg.heldout, cfg.seed)
    probes = draw_probes(split, cfg.probes, cfg.seed, np.isfinite(base_nll))
    study = Study(recipe, cfg, chosen, Path(out), run, matrix, upstream, task_sets, split, base_nll, probes, active)
    _validate_cells(study, report_only)
    return study


def _validate_cells(study: Study, report_only: bool = False) -> None:
    cfg = study.cfg
    if any(m.source == "file" for m in study.methods) and not cfg.score_file:
        raise LmforgetError("method 'file' needs replay.score_file=PATH (a CSV id,score[,task])")
    from lmforget.finetune import world_size

    if world_size() > 1:
        raise LmforgetError("the replay study runs in a single process (online swaps and scoring happen "
                            "between steps); launch it without accelerate/torchrun")
    unfinished = sorted(set(study.tasks) - set(study.matrix.tasks.tolist()))
    if unfinished and cfg.train_tasks is None and any(m.completer for m in study.methods) and not report_only:
        named = ", ".join(unfinished[:3]) + (", ..." if len(unfinished) > 3 else "")
        raise LmforgetError(f"run {study.run.path} has {len(unfinished)} unfinished task(s) ({named}): a completer "
                            "would learn from the rows "
                            "finished so far, and a later run from more; finish the run or list replay.train_tasks")
    for name in study.active:
        if len(study.train_rows(name)) == 0 and any(m.completer for m in study.methods):
            raise LmforgetError(f"no training rows left for task {name!r}; list replay.train_tasks")
        pool = study.pool(name)
        n_rep = n_replay(len(study.tasks[name].train), cfg.rate)
        if n_rep > len(pool):
            raise LmforgetError(f"task {name!r}: replay budget {n_rep} is larger than the replay pool "
                                f"({len(pool)} examples); lower replay.heldout or replay.rate")
        if any(m.source == "offline" for m in study.methods) and cfg.reveal > len(pool):
            raise LmforgetError(f"replay.reveal={cfg.reveal} is larger than the replay pool ({len(pool)})")




def prepare_out(study: Study) -> WorkDir:
    """The study's work directory, created or, when resumed, checked to hold the same settings. Manifests of an
    older identity version (the study's, and its run's, whose fingerprints it records) are migrated first."""
    if migrate(study.run.path, kind="run"):
        study.run = Run.open(study.run.path)
    migrate(study.out, kind="replay-study")
    # the recipe's score dtype was pinned to the run's recorded precision by open_study
    settings = study_settings(study.recipe, study.run.manifest.get("fingerprints", {}))
    return open_or_create(study.out, "replay-study", settings, check=check_study,
                          fields={"identity_version": IDENTITY_VERSION, "run": str(study.run.path)})
