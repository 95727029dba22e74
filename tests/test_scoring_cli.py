"""`lmforget score`: the score-table contract, and one-line errors with no output on bad input."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from lmforget.cli import main
from lmforget.data.types import Message, UpstreamExample
from lmforget.scoring import HFScorer, read_scores

RECORDS = [
    {"id": "a", "text": "The quick brown fox jumps over the lazy dog."},
    {"id": "b", "messages": [{"role": "user", "content": "Capital of France?"},
                             {"role": "assistant", "content": "Paris, of course."}]},
    {"id": "c", "text": "x"},
    {"id": "d", "text": "Wikipedia is a free online encyclopedia written by volunteers. " * 3},
]


@pytest.fixture()
def data_file(tmp_path):
    path = tmp_path / "upstream.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_score_writes_id_nll_ntokens(load_tiny, data_file, tmp_path, suffix: str) -> None:
    out = tmp_path / f"scores{suffix}"
    assert main(["score", "--model", "tiny:gpt2", "--data", str(data_file), "--out", str(out), "-q",
                 "--padding", "left", "--batch-size", "2", "--max-length", "32"]) == 0
    df = read_scores(out)
    assert list(df.columns) == ["id", "nll", "n_tokens"]
    assert df["id"].tolist() == ["a", "b", "c", "d"]
    model, tok = load_tiny("gpt2")
    examples = [UpstreamExample("a", text=RECORDS[0]["text"]),
                UpstreamExample("b", messages=(Message("user", "Capital of France?"),
                                               Message("assistant", "Paris, of course."))),
                UpstreamExample("c", text="x"), UpstreamExample("d", text=RECORDS[3]["text"])]
    expected = HFScorer(model, tok, max_length=32, progress=False).score(examples)
    for row, exp in zip(df.itertuples(), expected, strict=True):
        assert row.n_tokens == exp.n_tokens
        assert (math.isnan(row.nll) and math.isnan(exp.nll)) or abs(row.nll - exp.nll) < 1e-6
    assert df.loc[df["id"] == "c", "n_tokens"].item() == 0 and math.isnan(df.loc[df["id"] == "c", "nll"].item())


def test_score_json_summary(data_file, tmp_path, capsys) -> None:
    out = tmp_path / "s.csv"
    assert main(["score", "-m", "tiny:llama", "-d", str(data_file), "-o", str(out), "-q", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    df = pd.read_csv(out)
    assert summary["rows"] == 4 and summary["undefined"] == 1
    assert summary["scored_tokens"] == int(df["n_tokens"].sum())


@pytest.mark.parametrize("case", ["missing-data", "bad-out", "no-model", "no-tiny", "bad-gguf", "bad-line",
                                  "bad-padding", "bad-dtype"])
def test_bad_input_is_one_line_exit_2_and_no_output(case: str, data_file, tmp_path, capsys) -> None:
    out = tmp_path / "out.csv"
    model, data = "tiny:llama", str(data_file)
    extra: list[str] = []
    if case == "missing-data":
        data = str(tmp_path / "nope.jsonl")
    elif case == "bad-out":
        out = tmp_path / "out.txt"
    elif case == "no-model":
        model = "nobody/no-such-model"
    elif case == "no-tiny":
        model = "tiny:bert"
    elif case == "bad-gguf":
        model = str(tmp_path / "missing.gguf")
    elif case == "bad-line":
        data_file.write_text(json.dumps(RECORDS[0]) + "\n{not json\n")
    elif case == "bad-padding":
        extra = ["--padding", "middle"]
    else:
        extra = ["--dtype", "float8"]
    capsys.readouterr()
    code = main(["score", "--model", model, "--data", data, "--out", str(out), "-q", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("lmforget: error:"), err
    if case in ("no-model", "no-tiny", "bad-gguf"):
        assert "model not found" in err
    if case == "bad-line":
        assert ":2" in err or "line 2" in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))
