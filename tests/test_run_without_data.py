"""A run directory without data/ (committed results): report and status work from the manifest, base and
rows; self-sampled texts come back from their pinned token ids, checked against the manifest's fingerprint,
and a set that cannot be rebuilt shows its ids without text and one warning line, never a crash."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from lmforget.analysis.html_report import TEXT_CHARS
from lmforget.cli import main
from lmforget.errors import LmforgetError
from lmforget.runs import Run


def _texts(html: Path) -> dict:
    raw = re.search(r'<script type="application/json" id="lmforget-data">(.*?)</script>',
                    html.read_text(encoding="utf-8"), re.S).group(1)
    return json.loads(raw)["texts"]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict]:
    """STUDY/runs/run: a tiny self-sampled run whose draws are pinned in STUDY/samples/; returns the study
    folder and the upstream examples (id -> data/ record) the run was made with."""
    from lmforget.collect import collect
    from lmforget.config import load_recipe
    from lmforget.resources import cache_dir

    root = tmp_path_factory.mktemp("study")
    ctx = root / "contexts.jsonl"
    ctx.write_text("".join(json.dumps({"id": f"p{i}", "text": f"Pinned context {i} reads well. Then more."}) + "\n"
                           for i in range(6)))
    spec = {"format": "self-sampled", "contexts": {"format": "records", "path": str(ctx)},
            "context_sentences": 1, "new_tokens": 4, "samples": str(root / "samples" / "draws.jsonl")}
    before = set((cache_dir() / "self-sampled").glob("*.jsonl"))
    collect(load_recipe("tiny", ["upstream=" + json.dumps(spec)]), root / "runs" / "run",
            progress=False)
    for p in set((cache_dir() / "self-sampled").glob("*.jsonl")) - before:
        p.unlink()  # only the pinned file holds the draws now, as on a fresh clone
    recs = [json.loads(x) for x in (root / "runs" / "run" / "data" / "upstream.jsonl").read_text().splitlines()]
    return root, {r["id"]: r for r in recs}


def _copy(study: tuple[Path, dict], tmp_path: Path, *, keep_samples_path: bool = True) -> Path:
    """A copy of the study with the run's data/ deleted (and the manifest's samples path left out when
    `keep_samples_path` is false, as in runs made before the field existed)."""
    dst = tmp_path / "study"
    shutil.copytree(study[0], dst)
    run = dst / "runs" / "run"
    shutil.rmtree(run / "data")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["recipe"]["upstream"]["samples"] = str(dst / "samples" / "draws.jsonl") if keep_samples_path else None
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def _never_sample(monkeypatch) -> None:
    import lmforget.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("sampled instead of reading the pin"))


@pytest.mark.parametrize("keep_samples_path", [True, False])
def test_report_decodes_self_sampled_texts_from_the_pinned_ids(study, tmp_path, capsys, monkeypatch,
                                                               keep_samples_path):
    run_dir = _copy(study, tmp_path, keep_samples_path=keep_samples_path)
    (run_dir / "matrix.npz").unlink()  # the matrix too is assembled from base and rows alone
    _never_sample(monkeypatch)
    run = Run.open(run_dir)
    up = run.upstream()
    assert up.fingerprint()[:16] == run.manifest["fingerprints"]["upstream"]
    assert [list(e.input_ids) for e in up] == [r["input_ids"] for r in study[1].values()]
    assert "samples/draws.jsonl" in run.upstream_origin
    assert not (run_dir / "data").exists()  # reading never writes data/ back

    out = tmp_path / "r.html"
    assert main(["report", str(run_dir), "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["texts"] == 6 and summary["warning"] is None and "warning" not in captured.err
    shown = set(_texts(out).values())  # column index -> text, cut to TEXT_CHARS
    assert len(shown) == 6
    for i, rec in study[1].items():
        assert rec["text"][:TEXT_CHARS] in shown and f"Pinned context {i[1:]} reads well." in rec["text"]


def test_status_needs_no_data(study, tmp_path, capsys):
    run_dir = _copy(study, tmp_path)
    assert main(["status", str(run_dir), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["base_scored"] and st["counts"]["finished"] == len(st["tasks"]) > 0


def _edit_pin(run_dir: Path) -> None:
    pin = run_dir.parent.parent / "samples" / "draws.jsonl"
    lines = [json.loads(x) for x in pin.read_text().splitlines()]
    lines[1]["continuation"][0] = (lines[1]["continuation"][0] + 1) % 100  # same header, other ids
    pin.write_text("".join(json.dumps(x) + "\n" for x in lines))


@pytest.mark.parametrize("damage", ["edited", "deleted", "no-model"])
def test_unrecoverable_texts_show_ids_and_one_warning(study, tmp_path, capsys, monkeypatch, damage):
    run_dir = _copy(study, tmp_path)
    if damage == "edited":
        _edit_pin(run_dir)  # the fingerprint check refuses the pinned ids
    elif damage == "deleted":
        shutil.rmtree(run_dir.parent.parent / "samples")
    else:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        manifest["recipe"]["model"]["name"] = str(tmp_path / "no-such-model")
        (run_dir / "manifest.json").write_text(json.dumps(manifest))
    _never_sample(monkeypatch)
    out = tmp_path / "r.html"
    assert main(["report", str(run_dir), "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["texts"] == 0 and summary["shape"][1] == 6 and _texts(out) == {}
    warnings = [x for x in captured.err.splitlines() if "warning" in x]
    assert len(warnings) == 1 and "6 example ids without text" in warnings[0], captured.err
    if damage == "edited":
        assert "another fingerprint than the run's" in warnings[0]
    # the strict reader (a replay study's cells need the examples themselves) refuses rather than guessing
    with pytest.raises(LmforgetError, match="could not be rebuilt from committed files"):
        Run.open(run_dir).upstream()


def test_other_formats_report_ids_without_data(tmp_path, capsys):
    """A records-upstream run is not rebuilt without data/ (only `collect` rebuilds it): ids, one warning;
    without matrix.npz the matrix comes from base.parquet's ids and the rows."""
    from lmforget.collect import collect
    from lmforget.config import load_recipe

    m = collect(load_recipe("tiny"), tmp_path / "run", progress=False)
    shutil.rmtree(tmp_path / "run" / "data")
    (tmp_path / "run" / "matrix.npz").unlink()
    again = Run.open(tmp_path / "run").matrix()
    assert again.examples.tolist() == m.examples.tolist() and np.allclose(again.Z, m.Z, equal_nan=True)
    assert main(["report", str(tmp_path / "run"), "-o", str(tmp_path / "r.html")]) == 0
    err = capsys.readouterr().err
    assert err.count("lmforget: warning:") == 1 and "not format 'records'" in err
    assert (tmp_path / "r.html").is_file()
    # nothing to show at all (no base scores): one error line, exit 2, no file
    (tmp_path / "run" / "base.parquet").unlink()
    assert main(["report", str(tmp_path / "run"), "-o", str(tmp_path / "y.html")]) == 2
    assert capsys.readouterr().err.count("lmforget: error:") == 1 and not (tmp_path / "y.html").exists()


def test_report_of_a_replay_study_opens_its_run(study, tmp_path, capsys, monkeypatch):
    """A study's manifest names its run as a path from where the study was made; the report finds it from
    the study's parent folders and checks it by its fingerprints."""
    run_dir = _copy(study, tmp_path)
    fps = json.loads((run_dir / "manifest.json").read_text())["fingerprints"]
    sdir = run_dir.parent / "replay"
    sdir.mkdir()
    (sdir / "manifest.json").write_text(json.dumps({"run": "study/runs/run", "settings": {
        "recipe": {}, "replay": {"test_tasks": []}, "run_fingerprints": fps}}))
    monkeypatch.chdir(run_dir)  # "study/runs/run" does not resolve from here
    out = tmp_path / "r.html"
    assert main(["report", str(sdir), "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["texts"] == 6
    assert main(["status", str(sdir)]) == 0
    fps["upstream"] = "0" * 16  # another run lies there
    (sdir / "manifest.json").write_text(json.dumps({"run": "study/runs/run", "settings": {
        "recipe": {}, "replay": {"test_tasks": []}, "run_fingerprints": fps}}))
    assert main(["report", str(sdir), "-o", str(tmp_path / "x.html")]) == 2
    assert "holds another run" in capsys.readouterr().err and not (tmp_path / "x.html").exists()
