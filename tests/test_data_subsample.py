"""Sampling many shards: seeded, the same whatever the number of worker processes, in corpus order."""

import gzip
import json
from pathlib import Path

import pytest

from lmforget.data import load_upstream
from lmforget.data.specs import upstream_spec
from lmforget.data.subsample import shard_specs
from lmforget.errors import LmforgetError


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("dolma")
    for k in range(4):
        docs = [{"id": f"{k}-{i}", "text": f"document {i} of shard {k} " + "word " * (i % 7),
                 "source": ["cc", "wiki"][i % 2]} for i in range(300)]
        name = f"cc_en_head-{k:04d}.json.gz" if k % 2 else f"part-{k}.jsonl.gz"
        (root / name).write_bytes(gzip.compress("".join(json.dumps(d) + "\n" for d in docs).encode()))
    return root


def test_sample_does_not_depend_on_the_number_of_workers(shards):
    spec = {"format": "dolma", "path": str(shards), "n": 50, "seed": 7}
    one = load_upstream(spec, workers=1)
    two = load_upstream(spec, workers=2)
    assert one.examples == two.examples and len(one) == 50  # ids, texts and sources alike
    assert one.ids != load_upstream({**spec, "seed": 8}, workers=1).ids
    # corpus order: shard by shard (sorted file names), then position within the shard
    files = [Path(s.path).name for s in shard_specs(upstream_spec(spec))]
    assert files == ["cc_en_head-0001.json.gz", "cc_en_head-0003.json.gz", "part-0.jsonl.gz", "part-2.jsonl.gz"]
    shard_rank = {"1": 0, "3": 1, "0": 2, "2": 3}
    ranks = [(shard_rank[i.split("/")[1].split("-")[0]], int(i.split("-")[1])) for i in one.ids]
    assert ranks == sorted(ranks) and len({r[0] for r in ranks}) == 4


def test_fraction_is_a_seeded_bernoulli_sample(shards):
    spec = {"format": "dolma", "path": str(shards), "fraction": 0.1, "seed": 1}
    a = load_upstream(spec, workers=1)
    assert a.ids == load_upstream(spec, workers=2).ids
    assert 80 <= len(a) <= 160  # about 10% of 1,200
    capped = load_upstream({**spec, "n": 20}, workers=2)
    assert len(capped) == 20 and set(capped.ids) <= set(a.ids)
    with pytest.raises(LmforgetError, match="'fraction' samples at random"):
        load_upstream({**spec, "select": "first"})


def test_filters_apply_before_sampling_in_every_worker(shards):
    up = load_upstream({"format": "dolma", "path": str(shards), "n": 30, "sources": ["wiki"], "seed": 0}, workers=2)
    assert len(up) == 30 and set(up.sources) == {"wiki"}
    # counted in every worker: lines that could not be chosen are not even parsed, and say so
    unparsed = up.stats.get("beyond the sample (not parsed)", 0)
    assert up.stats["read"] == 1200 and up.stats["chosen"] == 30 and unparsed > 600
    assert up.stats["from other sources"] + unparsed + up.stats["chosen"] <= 1200
    with pytest.raises(LmforgetError, match=r"no examples left after filtering \(sources present: cc, wiki\)"):
        load_upstream({"format": "dolma", "path": str(shards), "n": 3, "sources": ["books"]}, workers=2)


def test_empty_texts_are_counted_not_scored(tmp_path):
    docs = [{"id": str(i), "text": "  \n" if i % 3 == 0 else f"text {i}"} for i in range(9)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    up = load_upstream({"format": "dolma", "path": str(tmp_path / "d.jsonl")})
    assert up.ids == ["1", "2", "4", "5", "7", "8"] and up.stats == {"read": 9, "empty text": 3, "chosen": 6}


def test_bad_lines_in_a_worker_name_their_shard_and_line(shards, tmp_path):
    import shutil

    for f in shards.iterdir():
        shutil.copy(f, tmp_path / f.name)
    bad = tmp_path / "part-9.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"id": "a", "text": "fine"}\n{"id": "b", "text": "cut off\n'))
    # a line that cannot be chosen is not parsed, but still has to look like one object
    with pytest.raises(LmforgetError, match=r"part-9\.jsonl\.gz, line 2: expected one JSON object per line"):
        load_upstream({"format": "dolma", "path": str(tmp_path), "n": 5}, workers=2)
    bad.write_bytes(gzip.compress(b'{"id": "a", "text": "fine"}\n{"id": "b", "text": }\n'))
    with pytest.raises(LmforgetError, match=r"part-9\.jsonl\.gz, line 2: malformed JSON .*one JSON object per line"):
        load_upstream({"format": "dolma", "path": str(tmp_path), "fraction": 1.0}, workers=2)  # every line parsed
