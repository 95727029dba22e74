"""The adapters on real files, in the layouts their owners release (samples in $LMFORGET_REALFORMATS,
sources listed in its SOURCES.md),
and on the released layouts no sample exists for (Pile .jsonl.zst, Tulu 3 / OLMo-2 mixtures, FLAN v2,
hub caches), written here in the released shape. Expected counts and answers are read from the files
with the standard library, independently of lmforget's readers."""

import csv
import gzip
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from lmforget.data import load_tasks, load_upstream
from lmforget.data.files import iter_path, read_records
from lmforget.errors import LmforgetError

# The samples live outside the project (never copied in); LMFORGET_REALFORMATS points elsewhere.
REAL = Path(os.environ.get("LMFORGET_REALFORMATS", "/work/shared/realformats"))
real = pytest.mark.skipif(not (REAL / "SOURCES.md").is_file(),
                          reason=f"the real-format samples are not on this machine ({REAL} is absent)")


def pairs(tasks):
    return Counter((ex.prompt, ex.completion) for t in tasks for ex in t.train + t.eval)


# --- real samples ---------------------------------------------------------------------------------


@real
@pytest.mark.parametrize("layout,suffix", [("json", ".json"), ("jsonl", ".jsonl")])
def test_bbh_both_released_layouts(layout, suffix):
    folder = REAL / "bbh" / layout
    tasks = load_tasks({"format": "bbh", "path": str(folder)})
    files = sorted(folder.glob(f"*{suffix}"))
    assert [t.name for t in tasks] == [f.name[: -len(suffix)] for f in files] and len(tasks) == 3
    for task, f in zip(tasks, files, strict=True):
        if suffix == ".json":
            rows = json.loads(f.read_text())["examples"]
        else:
            rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        assert len(task.train) == len(rows) == 250 and task.group == "bbh"
        assert pairs([task]) == Counter((r["input"], str(r["target"])) for r in rows)


@real
def test_truthfulqa_generation_csv():
    path = REAL / "truthfulqa" / "TruthfulQA.csv"
    tasks = load_tasks({"format": "truthfulqa", "path": str(path)})
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 817 and sum(len(t.train) for t in tasks) == 817
    assert len(tasks) == len({r["Category"] for r in rows}) == 38
    assert pairs(tasks) == Counter((r["Question"].strip(), r["Best Answer"].strip()) for r in rows)
    assert "misconceptions" in {t.name for t in tasks}


@real
def test_dolly_released_jsonl():
    path = REAL / "dolly" / "databricks-dolly-15k.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    tasks = load_tasks({"format": "dolly", "path": str(path), "n_eval": 1000})
    by_cat = Counter(r["category"] for r in rows)
    assert len(rows) == 145 and len(by_cat) == 8
    assert {t.name: len(t.train) + len(t.eval) for t in tasks} == dict(by_cat)
    assert {t.name: len(t.train) for t in tasks} == {c: int(0.8 * n) for c, n in by_cat.items()}
    assert Counter(ex.completion for t in tasks for ex in t.train + t.eval) == Counter(r["response"] for r in rows)


@real
def test_mmlu_as_released_by_its_authors():
    root = REAL / "mmlu" / "data"
    tasks = load_tasks({"format": "mmlu", "path": str(root)})
    assert [t.name for t in tasks] == ["abstract_algebra", "high_school_computer_science"]
    for task in tasks:
        with open(root / "test" / f"{task.name}_test.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        with open(root / "dev" / f"{task.name}_dev.csv", newline="", encoding="utf-8") as fh:
            dev = list(csv.reader(fh))
        assert len(rows) == 100 and len(dev) == 5
        got = Counter((ex.prompt.rsplit("\n\n", 1)[-1].split("\nA. ")[0], ex.completion) for ex in task.train)
        assert got == Counter((r[0].strip(), r[5]) for r in rows)
        assert all(ex.prompt.count("\nAnswer: ") == 5 for ex in task.train)  # five dev shots, answered
        assert dev[0][0].strip() in task.train[0].prompt


@real
@pytest.mark.parametrize("name", ["json-gz/000.json.gz", "jsonl-gz/cc_en_head-0174.jsonl.gz"])
def test_dolma_shards_in_both_namings_are_json_lines(name):
    path = REAL / "dolma" / name
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    up = load_upstream({"format": "dolma", "path": str(path)})
    assert len(up) == len(docs) == 10
    assert up.ids == [f"{d['source']}/{d['id']}" for d in docs]
    assert [ex.text for ex in up] == [d["text"] for d in docs] and set(up.sources) == {"common-crawl"}


@real
def test_dolma_folder_of_both_namings():
    up = load_upstream({"format": "dolma", "path": str(REAL / "dolma"), "n": 5, "seed": 1})
    assert len(up) == 5
    assert len(load_upstream({"format": "dolma", "path": str(REAL / "dolma")})) == 20


@real
def test_errors_on_real_files_name_file_record_and_expectation():
    with pytest.raises(LmforgetError, match=r"databricks-dolly-15k\.jsonl, line 1: missing required field "
                                            r"'Category' \(has: instruction, context, response, category\)"):
        load_tasks({"format": "truthfulqa", "path": str(REAL / "dolly" / "databricks-dolly-15k.jsonl")})
    with pytest.raises(LmforgetError, match=r"boolean_expressions\.json, record 0: missing required field 'text'"):
        load_upstream({"format": "dolma", "path": str(REAL / "bbh" / "json" / "boolean_expressions.json")})
    with pytest.raises(LmforgetError,
                       match=r"TruthfulQA\.csv, row 2: missing required field 'task' "
                             r"\(or 'task_name' / '_task_name'\)"):
        load_tasks({"format": "flan", "path": str(REAL / "truthfulqa" / "TruthfulQA.csv")})


# --- released layouts written here ----------------------------------------------------------------


def write_zst(path, rows):
    zstandard = pytest.importorskip("zstandard")
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(data))


def pile_rows(n):
    sets = ["Pile-CC", "Github", "ArXiv"]
    return [{"text": ("short" if i % 4 == 0 else f"document {i} " + "words " * 30),
             "meta": {"pile_set_name": sets[i % 3]}} for i in range(n)]


def test_pile_jsonl_zst_first_documents_over_100_chars(tmp_path):
    rows = pile_rows(40)
    write_zst(tmp_path / "00.jsonl.zst", rows)
    up = load_upstream({"format": "pile", "path": str(tmp_path), "select": "first", "n": 10, "min_chars": 101})
    expected = [i for i, r in enumerate(rows) if len(r["text"]) > 100][:10]
    assert up.ids == [f"pile-{i}" for i in expected]
    assert up.sources == [rows[i]["meta"]["pile_set_name"] for i in expected]
    # reading stopped at the 10th long document; the short ones before it are counted, not hidden
    assert up.stats == {"read": expected[-1] + 1, "shorter than 101 characters": expected[-1] + 1 - 10, "chosen": 10}


def test_pile_first_n_stops_reading_early(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    good = "".join(json.dumps(r) + "\n" for r in pile_rows(30)).encode()
    (tmp_path / "00.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(good + b"{broken\n"))
    up = load_upstream({"format": "pile", "path": str(tmp_path), "select": "first", "n": 5, "min_chars": 101})
    assert len(up) == 5  # the bad line 31 is never reached
    with pytest.raises(LmforgetError, match=r"00\.jsonl\.zst, line 31: malformed JSON .*one JSON object per line"):
        load_upstream({"format": "pile", "path": str(tmp_path)})


def test_truncated_compressed_shard_names_file_and_last_line(tmp_path):
    import random

    rng = random.Random(0)
    text = "".join(json.dumps({"id": i, "text": "%064x" % rng.getrandbits(256)}) + "\n" for i in range(40000))
    data = gzip.compress(text.encode())  # ~3 MB of text: the cut comes after whole blocks were read
    (tmp_path / "cut.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(LmforgetError, match=r"cut\.json\.gz: cannot read after line \d+ .*expected a complete"):
        load_upstream({"format": "dolma", "path": str(tmp_path / "cut.json.gz")})


def test_compression_and_json_kind_are_told_by_content(tmp_path):
    rows = [{"id": i, "text": f"t{i}", "source": "s"} for i in range(3)]
    lines = "".join(json.dumps(r) + "\n" for r in rows).encode()
    (tmp_path / "plain.jsonl.gz").write_bytes(lines)  # named .gz, not compressed
    write_zst(tmp_path / "zst.json.gz", rows)  # zstandard under a gzip name
    (tmp_path / "array.json.gz").write_bytes(gzip.compress(json.dumps(rows, indent=1).encode()))
    (tmp_path / "lines.json").write_bytes(lines)
    for name in ("plain.jsonl.gz", "zst.json.gz", "array.json.gz", "lines.json"):
        assert read_records(tmp_path / name) == rows, name
    where = [w for _, w in iter_path(tmp_path / "lines.json")]
    assert where[2].endswith("lines.json, line 3")
    (tmp_path / "gaps.json").write_bytes(b"\n" + lines.replace(b"\n", b"\n\n", 1) + b'{"id": 9,\n')
    with pytest.raises(LmforgetError, match=r"gaps\.json, line 6: malformed JSON"):  # blank lines counted
        read_records(tmp_path / "gaps.json")


def test_broken_gzip_streams_are_one_error_naming_the_file(tmp_path):
    good = gzip.compress(b"".join(json.dumps({"id": i, "text": "x"}).encode() + b"\n" for i in range(100)))
    for name, at in (("crc.jsonl.gz", -6), ("deflate.jsonl.gz", 12)):
        data = bytearray(good)
        data[at] ^= 0xFF
        data[at + 1] ^= 0xFF
        (tmp_path / name).write_bytes(bytes(data))
        with pytest.raises(LmforgetError, match=rf"{name}: cannot read after line \d+ .*expected a complete gzip"):
            load_upstream({"format": "dolma", "path": str(tmp_path / name)})


def test_tulu3_and_olmo2_mixtures_carry_the_subset_in_source(tmp_path):
    rows = [{"id": f"r{i}", "source": ["ai2-adapt-dev/flan_v2_converted", "allenai/tulu-3-sft-personas-math"][i % 2],
             "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(8)]
    import pandas as pd

    pd.DataFrame(rows).to_parquet(tmp_path / "train-00000-of-00001.parquet")
    tasks = load_tasks({"format": "tulu", "path": str(tmp_path), "group": "olmo2-sft"})
    assert {t.name: len(t.train) for t in tasks} == {"ai2-adapt-dev/flan_v2_converted": 4,
                                                     "allenai/tulu-3-sft-personas-math": 4}
    up = load_upstream({"format": "tulu", "path": str(tmp_path), "sources": ["ai2-adapt-dev/flan_v2_converted"]})
    assert up.ids == ["r0", "r2", "r4", "r6"] and up.examples[1].gold == "a2"
    (tmp_path / "bad.jsonl").write_text(json.dumps({"id": "x", "messages": rows[0]["messages"]}) + "\n")
    with pytest.raises(LmforgetError,
                       match=r"bad\.jsonl, line 1: missing required field 'dataset' \(Tulu v2\) or 'source'"):
        load_tasks({"format": "tulu", "path": str(tmp_path / "bad.jsonl")})


@pytest.mark.parametrize("field", ["task_name", "_task_name", "task"])
def test_flan_v2_as_released(tmp_path, field):
    # The FLAN collection's exports: inputs/targets plus the task name in one of its released fields.
    rows = [{"inputs": f"Q{i}", "targets": f"A{i}", field: ["glue_qqp:2.0.0", "cot_gsm8k"][i % 2],
             "_template_type": "zs_opt", "_task_source": "Flan2021"} for i in range(6)]
    (tmp_path / "flan.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    tasks = load_tasks({"format": "flan", "path": str(tmp_path)})
    assert {t.name: sorted(ex.completion for ex in t.train) for t in tasks} == {
        "glue_qqp": ["A0", "A2", "A4"], "cot_gsm8k": ["A1", "A3", "A5"]}


# --- Hugging Face: local copies without network --------------------------------------------------


def _hub_cache(root: Path, repo: str, files: dict[str, bytes]) -> None:
    """The huggingface_hub cache layout that `hf download --repo-type dataset REPO` leaves behind."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / ("datasets--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    for rel, data in files.items():
        f = repo_dir / "snapshots" / commit / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)


def test_hub_dataset_from_the_local_hub_cache_offline(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    docs = [{"id": str(i), "text": f"document {i}", "source": "c4"} for i in range(6)]
    blob = gzip.compress("".join(json.dumps(d) + "\n" for d in docs).encode())
    more = gzip.compress("".join(json.dumps({"id": str(i), "text": f"doc {i}", "source": "wiki"}) + "\n"
                                 for i in range(5)).encode())
    _hub_cache(tmp_path, "org/dolma-mini", {"README.md": b"# mini\n", "data/train-0000.json.gz": blob,
                                           "data/test-0000.json.gz": gzip.compress(b'{"id": "t", "text": "x"}\n'),
                                           "data/train-0001.json.gz": more})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("no network path expected"))
    up = load_upstream({"format": "dolma", "dataset": "org/dolma-mini"})
    assert up.ids == [f"c4/{i}" for i in range(6)] + [f"wiki/{i}" for i in range(5)]
    # its shards are sampled in parallel like local files, with the same result
    spec = {"format": "dolma", "dataset": "org/dolma-mini", "n": 4, "seed": 3}
    assert load_upstream(spec, workers=2).ids == load_upstream(spec, workers=1).ids
    assert load_upstream({"format": "dolma", "dataset": "org/dolma-mini", "split": "test"}).ids == ["t"]
    with pytest.raises(LmforgetError, match="no split 'validation' in the local copy"):
        load_upstream({"format": "dolma", "dataset": "org/dolma-mini", "split": "validation"})


def test_hub_dataset_from_the_datasets_cache_offline(tmp_path, monkeypatch):
    import datasets

    rows = [{"id": f"d{i}", "text": f"text {i}", "source": "wiki"} for i in range(4)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = tmp_path / "cache"
    datasets.load_dataset("json", data_files=str(tmp_path / "d.jsonl"), split="train", cache_dir=str(cache))
    built = next(p for p in (cache / "json").glob("*/*/*") if p.is_dir())
    # What `load_dataset("org/wiki-mini")` leaves in the datasets cache: <org>___<name>/<config>/<version>/<hash>.
    target = cache / "org___wiki-mini" / "default" / "0.0.0" / built.name
    target.parent.mkdir(parents=True)
    built.rename(target)
    (target / "json-train.arrow").rename(target / "wiki-mini-train.arrow")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    up = load_upstream({"format": "dolma", "dataset": "org/wiki-mini"})
    assert up.ids == [f"wiki/d{i}" for i in range(4)]
