"""One replay cell: a test task fine-tuned with one arm (the shared unit, `lmforget.unit.FineTune`, on a
replay mixture), then its held-out set and its eval split scored, once per WiSE-FT alpha of the arm."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmforget.atomic import write_json
from lmforget.data.types import TaskSet, UpstreamSet
from lmforget.errors import LmforgetError
from lmforget.replay.methods import Method
from lmforget.replay.mixture import mixture_steps, n_replay
from lmforget.replay.study_setup import Study
from lmforget.runs import write_table


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


def em_plan(tokenizer, examples: UpstreamSet, limit: int, scope: str = "task") -> tuple[int, np.ndarray] | None:
    """Which eval examples get exact match, and how many greedy tokens to generate (the longest of their
    gold answers + 8); None when none do. Only answers of at most `limit` tokens qualify (exact match of long
    answers says little; their NLL is still measured). Scope "task": all examples or none."""
    if not limit:
        return None
    lengths = np.array([len(tokenizer(ex.gold, add_special_tokens=False)["input_ids"]) for ex in examples])
    short = lengths <= limit
    if not short.any() or (scope == "task" and not short.all()):
        return None
    return int(lengths[short].max()) + 8, short


def score_task(model, tokenizer, examples: UpstreamSet, study: Study, em: tuple[int, np.ndarray] | None
               ) -> pd.DataFrame:
    """The task's eval examples under `model`: answer NLL (id, nll, n_tokens) and, with an `em_plan`,
    whether the greedy answer matches the gold one (`correct`: True/False, missing where not measured)."""
    from lmforget.scoring.generate import generate_and_match
    from lmforget.scoring.upstream import score_upstream

    ft, score = study.recipe.finetune, study.recipe.score
    cfg = score.model_copy(update={"metric": "logppl", "max_length": ft.max_length})  # as long as training saw
    frame = score_upstream(model, tokenizer, examples, cfg, progress=False)
    if em is not None:
        em_tokens, measured = em
        gens = generate_and_match(model, tokenizer, [ex for ex, m in zip(examples, measured, strict=True) if m],
                                  max_new_tokens=em_tokens, max_length=ft.max_length, batch_size=score.batch_size)
        correct = pd.array([pd.NA] * len(frame), dtype="boolean")
        correct[np.flatnonzero(measured)] = [g.correct for g in gens]
        frame["correct"] = correct
    return frame


def finished_task_before(study: Study, task_name: str, examples: UpstreamSet,
                         em: tuple[int, np.ndarray] | None) -> tuple[pd.DataFrame, str] | None:
    """The task's eval scores under the base model, taken from a finished cell of the same task (its
    `.task.parquet`), and that cell's file name; None when there is none that fits.

    Every arm of a task scores the same base model on the same examples (in study 2 `task_nll_before` was
    bit-identical in all 15 arms of each of the 12 tasks), so one scoring serves them all and the other cells
    skip it: 25-100 s each on CPU. Only files this process can see count (a Ray worker on another node scores
    anew); one of another task, or whose ids or exact-match plan differ from this cell's, is ignored.
    """
    from lmforget.workdir import cell_folder

    folder = cell_folder(study.out, task_name)
    ids = [ex.id for ex in examples]
    for path in sorted(folder.glob("*.task.parquet")):
        done = path.with_name(path.name.removesuffix(".task.parquet") + ".json")
        try:
            if json.loads(done.read_text(encoding="utf-8")).get("task") != task_name:
                continue
            table = pd.read_parquet(path)
        except (OSError, ValueError, AttributeError):  # missing or unreadable: score anew rather than trust it
            continue
        if not {"id", "nll_before", "n_tokens"} <= set(table.columns) or table["id"].tolist() != ids:
            continue
        before = pd.DataFrame({"id": table["id"], "nll": table["nll_before"], "n_tokens": table["n_tokens"]})
        if em is not None:
            if "correct_before" not in table.columns:
                continue
            correct = table["correct_before"].astype("boolean")
            if not np.array_equal(correct.notna().to_numpy(), em[1]):
                continue
            before["correct"] = correct.array
        return before, done.stem
    return None


def task_gain(before: pd.DataFrame, after: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per-example task scores before and after, and the cell's task-gain numbers (positive = learned)."""
    table = pd.DataFrame({"id": before["id"], "nll_before": before["nll"].to_numpy(np.float64),
                          "nll_after": after["nll"].to_numpy(np.float64), "n_tokens": before["n_tokens"]})
    rec = {"task_eval_n": int(np.isfinite(table["nll_before"]).sum()),
           "task_nll_before": float(np.nanmean(table["nll_before"])),
           "task_nll_after": float(np.nanmean(table["nll_after"])),
           "task_gain": float(np.nanmean(table["nll_before"] - table["nll_after"]))}
    if "correct" in before and "correct" in after:
        table["correct_before"] = before["correct"].astype("boolean").array  # missing: not measured
        table["correct_after"] = after["correct"].astype("boolean").array
        rec.update(task_em_n=int(table["correct_before"].notna().sum()),
                   task_em_before=float(table["correct_before"].mean()),  # over the measured examples
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
    from lmforget.replay.mixture import ReplayMixture
    from lmforget.replay.selection import select_random
    from lmforget.unit import FineTune

    method = methods[0].training()
    if any(m.trained_as != method.name for m in methods):
        raise LmforgetError(f"{task_name}: methods {', '.join(m.name for m in methods)} do not share one arm")
    cfg = study.cfg
    ft = arm_finetune(study.recipe.finetune, method)
    task = study.tasks[task_name]
    seed = study.task_seed(task_name)
    pool = study.pool(task_name)
    unit = FineTune(study.recipe, task, finetune=ft)  # the base model as collect loads it
    model, tokenizer, task_items = unit.model, unit.tokenizer, unit.train_set
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
    em = em_plan(tokenizer, evals, cfg.task_em_max_tokens, cfg.task_em_scope) if evals is not None else None
    task_before = None
    if evals is not None:
        reused = finished_task_before(study, task_name, evals, em)
        if reused is None:
            task_before = score_task(model, tokenizer, evals, study, em)
        else:
            task_before, record["task_before_from"] = reused
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
    kl_weight = method.kl_weight if method.kl_weight is not None else cfg.kl_weight
    if method.replays and method.objective == "kl":  # the base distribution, once per example that may be replayed
        from lmforget.replay.kl import base_targets

        may_replay = pool if method.source == "online" else picks
        targets = base_targets(model, tokenizer, [study.upstream.examples[int(c)] for c in may_replay],
                               k=cfg.kl_top_k, max_length=ft.max_length)
        record["kl_top_k"] = cfg.kl_top_k
        record["kl_weight"] = kl_weight
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

    result = unit.train(mixture, steps=steps, callbacks=callbacks, progress=progress,
                        description=f"{task_name} / {method.name}",
                        trainer_cls=MixtureTrainer.weighted(cfg.loss_weighting, method.objective, kl_weight))
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
        after = unit.score(heldout, progress=progress, description=f"scoring {task_name} / {m.name}")
        after["increase"] = after["nll"].to_numpy(np.float64) - study.base_nll[study.split.heldout]
        rec = {**record, "method": m.name, "heldout_mean_increase": float(np.nanmean(after["increase"])),
               "heldout_n": int(np.isfinite(after["increase"]).sum())}
        if m.wise_ft is not None:
            rec.update(wise_ft=m.wise_ft, trained_as=method.name)
        table = None
        if task_before is not None:
            table, gain = task_gain(task_before, score_task(result.model, tokenizer, evals, study, em))
            rec.update(gain)
        rec["seconds"] = time.perf_counter() - unit.start
        cells.append(Cell(m, after, rec, table))
    model = theta0 = theta1 = None
    unit.release()  # this cell's model must not stay under the next one
    return cells


def write_cell(study: Study, task_name: str, method: Method, after: pd.DataFrame, record: dict,
               task_scores: pd.DataFrame | None = None) -> None:
    write_table(study.cell_path(task_name, method, ".parquet"), after)
    if task_scores is not None:
        write_table(study.cell_path(task_name, method, ".task.parquet"), task_scores)
    write_json(study.cell_path(task_name, method, ".json"), record)  # last: marks the cell done

