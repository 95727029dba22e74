"""The replay study (docs/protocol.md section 6, the paper's Figure 5): fine-tune each test task with each
replay method and measure forgetting on held-out upstream examples that no mixture ever contains.

Inputs come from a previous run directory (`replay.run`): its upstream set defines the columns (the
held-out set and the pool are subsets of them), its rows give the oracle scores, the completers'
training rows and the revealed entries of the offline methods, and its base scores are the "before"
of every held-out NLL increase. The recipe must describe the same model, data and scorer as the run.

Layout of OUT_DIR::

    manifest.json                    settings + fingerprints (a different setting is refused)
    results/<task>/<method>.parquet  held-out scores after fine-tuning (id, nll, n_tokens, increase)
    results/<task>/<method>.task.parquet  the task's eval examples before and after (the task's later
                                     cells read their `before` back instead of scoring the base model again)
    results/<task>/<method>.json     the cell's numbers and replay set; written last = cell done
    results/<task>/<method>.error.json  a failed cell's error (removed when a re-run finishes it)
    progress.json                    the running driver's pid, host, cells and cells in flight (`lmforget status`)
    results.json, report.md, figure.png  the aggregate, with each cell's numbers (its lists stay in its record)

Every (task, method) cell is written atomically and skipped when re-run, like `collect`.
Within a task every replaying method shares the mixture layout, sampler seed and step count, and
`online-*` starts from the very replay set `random` uses, so comparisons are paired.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from lmforget.config import ExecutorConfig, Recipe
from lmforget.errors import LmforgetError
from lmforget.replay.cell import run_cells, write_cell
from lmforget.replay.methods import Method
from lmforget.replay.results import write_results
from lmforget.replay.study_setup import open_study, prepare_out
from lmforget.workdir import cell_key, read_manifest

Log = Callable[[str], None]


def run_study(recipe: Recipe, out: str | Path, methods: list[str] | str | None = None, *,
              progress: bool = True, log: Log = lambda s: None, executor: ExecutorConfig | None = None,
              report_only: bool = False, tasks: list[str] | None = None) -> dict:
    """Run (or resume) the study and write results.json, report.md and figure.png.

    Each (task, method) cell is one unit of `executor` (default: the recipe's); cells are written here
    as they finish. Failed cells are reported together at the end; a re-run retries them.
    `report_only`: run nothing; write the results of the tasks whose cells are all finished (an interim
    report of a study still running; the report says how many tasks it covers).
    `tasks`: run the cells of only these test tasks now (the results still cover every finished task).
    """
    from lmforget.driver import Unit, drive
    from lmforget.executor import one_gpu_per_unit, open_executor

    study = open_study(recipe, out, methods, tasks, report_only=report_only)
    if report_only:
        if read_manifest(study.out) is None:
            raise LmforgetError(f"{study.out}: no replay study here yet; run it without --report-only first")
        prepare_out(study)  # refuses a recipe whose settings differ from the study's
        return write_results(study)
    workdir = prepare_out(study)
    cells = [(t, m) for t in study.active for m in study.methods]
    todo = [(t, m) for t, m in cells if not study.done(t, m)]
    now = "" if len(study.active) == len(study.cfg.test_tasks) else f" (of {len(study.cfg.test_tasks)})"
    log(f"{len(study.active)} test tasks{now} x {len(study.methods)} methods; held-out {len(study.split.heldout)}, "
        f"pool {len(study.split.pool)} of {len(study.upstream)} upstream examples; "
        f"{len(cells) - len(todo)} cells already done -> {study.out}")
    exe_cfg = one_gpu_per_unit(executor or recipe.executor)  # a cell trains and scores in one process
    # one unit per task x trained arm: an arm's WiSE-FT cells share its training (they cost only scoring)
    arms: dict[str, tuple[str, list[Method]]] = {}
    for t, m in todo:
        arms.setdefault(cell_key(t, m.trained_as), (t, []))[1].append(m)
    done = 0

    def write(key: str, finished) -> list[str]:
        nonlocal done
        task, keys = arms[key][0], []
        for c in finished:
            done += 1
            write_cell(study, task, c.method, c.after, c.record, c.task_scores)
            rec, keys = c.record, [*keys, cell_key(task, c.method.name)]
            gain = "" if rec.get("task_gain") is None else f", task gain {rec['task_gain']:+.4f}"
            log(f"[{done}/{len(todo)}] {keys[-1]}: held-out NLL increase {rec['heldout_mean_increase']:+.4f}{gain} "
                f"({rec['n_rep']} replayed, {rec['steps']} steps, {rec['seconds']:.0f}s)")
        return keys

    with open_executor(exe_cfg) as ex:
        shared = ex.put(study)  # once: matrix, upstream set and tasks travel to the object store one time
        bars = progress and ex.kind == "local"
        units = [Unit(key, (shared, t, ms, bars), [cell_key(t, m.name) for m in ms]) for key, (t, ms) in arms.items()]
        drive(workdir, ex, run_cells, units, write, noun="replay cell", log=log,
              tracked=[cell_key(t, m.name) for t, m in cells])
    return write_results(study)
