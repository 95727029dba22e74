"""OpenAI evals' registry data (`evals` wheel) as fine-tuning tasks, read straight from the zip.

Layout: `evals/registry/data/<eval>/<file>.jsonl`, one sample per line:
`{"input": [chat messages] or str, "ideal": str or [str, ...]}`. One task per data file: named
`<eval>` when the folder holds one data file, else `<eval>.<file stem>` (few-shot files are skipped).
The prompt is the sample's messages (system messages become the system turn; few-shot turns, which
evals marks as system messages named example_user/example_assistant, become user/assistant turns
flattened into the prompt); the answer is the first `ideal`. Where `ideal` is an option letter and the
prompt lists lettered options, the answer becomes the option's text, so no task trains on letters.

Licences: the wheel's LICENSE.md says MIT except for the data folders it lists, each with its own
components' licences; a folder with any non-commercial component is marked non-commercial and left
out unless named in `tasks:`. Without `tasks:` only DEFAULT_TASKS are read: human-written English
tasks with at least 200 samples (the registry also holds many synthetic, non-English or tool tasks).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Iterator

from lmforget.data.registry import RawTask, register_tasks, skipped
from lmforget.data.specs import TaskSpec
from lmforget.data.types import Message, TaskExample
from lmforget.data.wheels import jsonl_rows, open_wheel, read_member, wheel_of
from lmforget.errors import LmforgetError

ROOT = "evals/registry/data/"
GROUP = "openai-evals"
FEW_SHOT = re.compile(r"(^|[/_-])(few_?shot|fewshot)", re.IGNORECASE)
DEFAULT_TASKS = (
    "quartz", "logiqa", "logiqa-logical-reasoning-plus.reclor-logical-reasoning-plus",
    "parable-to-moral-match.parable-to-moral-match-en", "ner_finance", "theory_of_mind.socialiqa.test",
    "sarcasm", "pararule-plus-multi-step-deductive-reasoning", "logical_counting", "population_span_extraction",
    "us_tort_law", "unsolvable_questions", "imperial_date_to_string", "regex-match", "physics-interaction",
    "recurrence-relation",
)
MC_NOTE = "Answer with the text of the correct option."
_LETTERED = re.compile(r"(?:^|[\s;(])([A-E])\s*[:.)]\s+(.+?)(?=(?:\s*[;\n]?\s*[A-E]\s*[:.)]\s)|\s*$)", re.DOTALL)


def task_name(relpath: str, single: bool) -> str:
    """'quartz/samples.jsonl' -> 'quartz' when alone in its folder, else 'quartz.samples'."""
    parts = PurePosixPath(relpath)
    folder = parts.parts[0]
    return folder if single else ".".join([folder, *parts.with_suffix("").parts[1:]])


def data_files(zf) -> dict[str, str]:
    """{task name: member} for every non-few-shot data file of the registry."""
    rel = [n[len(ROOT):] for n in zf.namelist() if n.startswith(ROOT) and n.endswith(".jsonl")]
    rel = [r for r in rel if "/" in r and not FEW_SHOT.search(r)]
    per_folder: dict[str, int] = {}
    for r in rel:
        per_folder[r.split("/", 1)[0]] = per_folder.get(r.split("/", 1)[0], 0) + 1
    return {task_name(r, per_folder[r.split("/", 1)[0]] == 1): ROOT + r for r in sorted(rel)}


def parse_licenses(text: str) -> dict[str, str]:
    """{eval folder: licence summary} from the wheel's LICENSE.md dataset section."""
    out: dict[str, str] = {}
    for block in re.split(r"\n#### ", text)[1:]:
        loc = re.search(r"\*\*Location\*\*:\s*evals/registry/data/([^\s/]+)", block)
        if not loc:
            continue
        names = re.findall(r"\*\*License\*\*:\s*([^\n]+)", block)
        licences = sorted({re.sub(r"\s*https?://\S+", "", n).strip().rstrip(":") for n in names})
        summary = "; ".join(licences) or "unknown"
        if any(re.search(r"non-?commercial|\bNC\b|BY-NC", n, re.IGNORECASE) for n in names):
            summary = "non-commercial (" + summary + ")"
        out[loc.group(1)] = summary
    return out


def _licenses(zf) -> dict[str, str]:
    name = next((n for n in zf.namelist() if n.endswith(".dist-info/LICENSE.md")), None)
    return parse_licenses(read_member(zf, name).decode("utf-8", "replace")) if name else {}


def letter_to_text(prompt: str, ideal: str) -> str:
    """The text of option `ideal` ('B') when the prompt lists lettered options, else `ideal` unchanged."""
    letter = ideal.strip().rstrip(".").strip()
    if len(letter) != 1 or letter not in "ABCDE":
        return ideal
    body = prompt.rstrip()
    body = body[: -len("Answer:")] if body.endswith("Answer:") else body
    options = {m.group(1): m.group(2).strip().rstrip(";").strip() for m in _LETTERED.finditer(body)}
    if len(options) < 2 or letter not in options:
        return ideal
    text = options[letter]
    return text[2:].strip() if text[:2] == f"{letter}." else text  # 'A. A.text' in some files


def _messages(raw, where: str) -> tuple[str | None, str]:
    """(system text, prompt text) from an evals `input` (a string or a list of messages)."""
    if isinstance(raw, str):
        return None, raw
    if not isinstance(raw, list) or not raw:
        raise LmforgetError(f"{where}: 'input' must be a string or a non-empty list of messages")
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for m in raw:
        if not isinstance(m, dict) or "content" not in m:
            raise LmforgetError(f"{where}: each message needs 'role' and 'content'")
        role, name, content = m.get("role"), m.get("name"), str(m["content"])
        if role == "system" and name in ("example_user", "example_assistant"):
            turns.append(("User" if name == "example_user" else "Assistant", content))
        elif role == "system" and not turns:
            system.append(content)
        else:
            turns.append(("Assistant" if role == "assistant" else "User", content))
    if not turns:  # a system-only sample: the instruction is the prompt
        return None, "\n\n".join(system)
    if len(turns) == 1:
        prompt = turns[0][1]
    else:  # few-shot or multi-turn: one prompt that shows the exchange
        prompt = "\n\n".join(f"{who}: {text}" for who, text in turns)
    return ("\n\n".join(system) or None), prompt


def convert(rec: dict, where: str) -> TaskExample | None:
    if "input" not in rec or "ideal" not in rec:
        return None  # not a completion sample (some evals store other record kinds)
    ideal = rec["ideal"]
    if isinstance(ideal, list):
        ideal = ideal[0] if ideal else ""
    if not isinstance(ideal, (str, int, float)) or not str(ideal).strip():
        return None
    system, prompt = _messages(rec["input"], where)
    answer = letter_to_text(prompt, str(ideal))
    if answer != str(ideal):  # a lettered option became its text: say so after the question
        prompt = prompt.rstrip() + "\n\n" + MC_NOTE
    msgs = ([Message("system", system)] if system else []) + [Message("user", prompt), Message("assistant", answer)]
    return TaskExample(tuple(msgs))


@register_tasks("openai-evals", own_location=True)
def read_tasks(spec: TaskSpec) -> Iterator[RawTask]:
    zf = open_wheel(wheel_of(spec, "openai-evals"))
    files = data_files(zf)
    if not files:
        raise LmforgetError(f"{zf.filename}: no {ROOT}<eval>/*.jsonl members")
    licences = _licenses(zf)
    wanted = set(spec.tasks) if spec.tasks else set(DEFAULT_TASKS) & set(files)
    for name, member in files.items():
        licence = licences.get(name.split(".", 1)[0], "MIT")
        if name not in wanted or (not spec.tasks and licence.startswith("non-commercial")):
            yield skipped(name)
            continue
        recs = list(jsonl_rows(zf, member))
        examples = [ex for rec, where in recs if (ex := convert(rec, where)) is not None]
        yield RawTask(name, GROUP, examples, None,
                      {"n_available": len(examples), "n_dropped": len(recs) - len(examples), "license": licence,
                       "source": f"evals:{member}"})
