"""MMLU as released: header-less CSVs (question, A, B, C, D, answer) in dev/, val/ and test/.

One task per subject (group "mmlu"). Each example is prompted with the subject's first `n_shots`
dev questions (the original 5-shot format) and answered with the option letter. `split` picks
the folder the examples come from (default test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from lmforget.data.readers import iter_csv
from lmforget.data.registry import RawTask, local_path, register_tasks, skipped
from lmforget.data.specs import TaskSpec
from lmforget.data.types import TaskExample
from lmforget.errors import LmforgetError

COLUMNS = ["question", "A", "B", "C", "D", "answer"]
LETTERS = ("A", "B", "C", "D")


def _rows(path: Path) -> list[tuple[dict, str]]:
    rows = []
    for row, where in iter_csv(path, fieldnames=COLUMNS):
        missing = [c for c in COLUMNS if not (row.get(c) or "").strip()]
        if missing:
            raise LmforgetError(f"{where}: missing required field {missing[0]!r} (expected 6 columns: "
                                f"{', '.join(COLUMNS)})")
        if row["answer"].strip() not in LETTERS:
            raise LmforgetError(f"{where}: field 'answer' must be one of A/B/C/D, got {row['answer']!r}")
        rows.append((row, where))
    return rows


def format_question(row: dict, with_answer: bool) -> str:
    text = row["question"].strip() + "".join(f"\n{k}. {row[k].strip()}" for k in LETTERS) + "\nAnswer:"
    return text + f" {row['answer'].strip()}\n\n" if with_answer else text


def _subject(path: Path, split: str) -> str:
    stem = path.name[: -len(".csv")]
    return stem[: -len(split) - 1] if stem.endswith("_" + split) else stem


@register_tasks("mmlu")
def read_tasks(spec: TaskSpec) -> Iterator[RawTask]:
    if spec.path is None:
        raise LmforgetError("format 'mmlu' reads the released CSV folders; "
                            "give 'path' (the folder with dev/ and test/)")
    root = Path(local_path(spec))
    split = spec.split or "test"
    folder = root / split
    if not folder.is_dir():
        raise LmforgetError(f"{root}: no {split}/ folder (MMLU layout: dev/, val/, test/ with <subject>_<split>.csv)")
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise LmforgetError(f"{folder}: no CSV files")
    wanted = set(spec.tasks) if spec.tasks else None
    for f in files:
        subject = _subject(f, split)
        if wanted is not None and subject not in wanted:
            yield skipped(subject)
            continue
        shots = ""
        if spec.n_shots:
            dev = root / "dev" / f"{subject}_dev.csv"
            if not dev.exists():
                raise LmforgetError(f"{dev}: no such file (needed for {spec.n_shots}-shot prompts; set n_shots: 0)")
            shots = "".join(format_question(r, True) for r, _ in _rows(dev)[: spec.n_shots])
        header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        pool = [TaskExample.from_prompt(header + shots + format_question(r, False), r["answer"].strip())
                for r, _ in _rows(f)]
        yield RawTask(subject, "mmlu", pool)
