"""Local readers: every file type gives the same records; bad input names file, line and field."""

from pathlib import Path

import pytest

from lmforget.data.files import expand_paths, file_type, iter_jsonl, iter_path, read_records
from lmforget.data.types import require
from lmforget.errors import LmforgetError

FIX = Path(__file__).parent / "fixtures" / "data"


@pytest.mark.parametrize("name", ["upstream.jsonl", "upstream.jsonl.gz", "upstream.json", "upstream.json.gz",
                                  "upstream.parquet", "upstream.csv"])
def test_every_file_type_reads_the_same_records(name):
    reference = read_records(FIX / "upstream.jsonl")
    rows = read_records(FIX / name)
    assert [(r["id"], r["source"], r["text"]) for r in rows] == [
        (r["id"], r["source"], r["text"]) for r in reference]
    assert len(rows) == 5 and rows[4]["text"].startswith("def area")


def test_malformed_jsonl_names_file_and_line():
    with pytest.raises(LmforgetError, match=r"upstream_bad\.jsonl, line 3: malformed JSON"):
        read_records(FIX / "upstream_bad.jsonl")


def test_records_before_a_bad_line_stream_out_first():
    it = iter_jsonl(FIX / "upstream_bad.jsonl")
    assert next(it)[1].endswith("line 1") and next(it)[0]["id"] == "u1"
    with pytest.raises(LmforgetError, match="line 3"):
        next(it)


def test_missing_file_and_empty_file_and_unknown_type(tmp_path):
    with pytest.raises(LmforgetError, match="no such file"):
        read_records(tmp_path / "nope.jsonl")
    with pytest.raises(LmforgetError, match="no records"):
        read_records(FIX / "empty.jsonl")
    (tmp_path / "data.xml").write_text("<a/>")
    with pytest.raises(LmforgetError, match="unknown file type"):
        read_records(tmp_path / "data.xml")
    assert file_type("x.JSONL.GZ") == "jsonl" and file_type("a.json.gz") == "json"


def test_non_object_line_and_bad_json_document(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(LmforgetError, match=r"a\.jsonl, line 2: expected a JSON object"):
        read_records(tmp_path / "a.jsonl")
    (tmp_path / "b.json").write_text('{\n  "x": 1,\n  "y": 2\n}\n')  # one document, no list of records
    with pytest.raises(LmforgetError, match="list of records"):
        read_records(tmp_path / "b.json")
    (tmp_path / "one.json").write_text('{"x": 1, "y": 2}\n')  # one JSON line: one record
    assert read_records(tmp_path / "one.json") == [{"x": 1, "y": 2}]
    (tmp_path / "c.json").write_text('[{"a": 1},\n {"a": ]')
    with pytest.raises(LmforgetError, match=r"c\.json, line 2: malformed JSON"):
        read_records(tmp_path / "c.json")


def test_csv_row_with_too_many_values(tmp_path):
    (tmp_path / "t.csv").write_text("id,text\n1,fine\n2,too,many\n")
    with pytest.raises(LmforgetError, match=r"t\.csv, row 3: more values than columns"):
        read_records(tmp_path / "t.csv")


def test_directories_and_globs_expand_in_sorted_order(tmp_path):
    files = expand_paths(FIX / "dolma")
    assert [f.name for f in files] == ["part-000.jsonl.gz", "part-001.jsonl"]
    assert expand_paths(str(FIX / "dolma" / "*.jsonl"))[0].name == "part-001.jsonl"
    with pytest.raises(LmforgetError, match="matches no files"):
        expand_paths(str(tmp_path / "*.jsonl"))
    with pytest.raises(LmforgetError, match="holds no"):
        expand_paths(tmp_path)


def test_require_names_field_and_record():
    with pytest.raises(LmforgetError, match=r"f\.jsonl, line 7: missing required field 'text'"):
        require({"id": 1}, "text", "f.jsonl, line 7")
    with pytest.raises(LmforgetError, match="must be str, got int"):
        require({"text": 3}, "text", "here")


def test_saved_to_disk_dataset_is_read(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = read_records(FIX / "upstream.jsonl")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    assert [r["id"] for r in read_records(tmp_path / "ds")] == [r["id"] for r in rows]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:2]),
                          "test": datasets.Dataset.from_list(rows[2:])}).save_to_disk(str(tmp_path / "dd"))
    assert len(read_records(tmp_path / "dd", split="test")) == 3
    with pytest.raises(LmforgetError, match="no split 'dev'"):
        list(iter_path(tmp_path / "dd", split="dev"))


def test_hub_failure_is_one_clear_error(monkeypatch):
    datasets = pytest.importorskip("datasets")
    from lmforget.data.hub import iter_hub

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'x/y' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(LmforgetError, match=r"hub data set 'x/y': cannot load \(ConnectionError.*local copy"):
        next(iter_hub("x/y"))


def test_hub_rows_stream_with_positions(monkeypatch):
    datasets = pytest.importorskip("datasets")
    from lmforget.data.hub import iter_hub

    calls = {}

    def fake(name, subset, split, streaming):
        calls.update(name=name, subset=subset, split=split, streaming=streaming)
        return iter([{"text": "a"}, {"text": "b"}])

    monkeypatch.setattr(datasets, "load_dataset", fake)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    rows = list(iter_hub("org/corpus", "en", None))
    assert [r["text"] for r, _ in rows] == ["a", "b"] and rows[1][1].endswith("row 1")
    assert calls == {"name": "org/corpus", "subset": "en", "split": "train", "streaming": True}
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # offline: datasets' own cache, memory-mapped
    assert len(list(iter_hub("org/corpus", "en", None))) == 2 and calls["streaming"] is False


def test_hub_snapshot_is_none_only_when_there_is_no_local_copy(monkeypatch, tmp_path):
    """Not cached or not a hub repo id: None (the hub is tried next). Any other failure, e.g. an unreadable
    cache, is not mistaken for 'not cached'."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from lmforget.data.hub import hub_snapshot

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert hub_snapshot("nobody/not-cached") is None
    assert hub_snapshot("not a repo id!") is None

    def unreadable(*args, **kwargs):
        raise PermissionError("cache: permission denied")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreadable)
    with pytest.raises(PermissionError, match="permission denied"):
        hub_snapshot("org/corpus")
