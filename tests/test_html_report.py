"""The interactive HTML report: its data against the matrix, escaping, the CLI, and a real browser.

The browser tests drive the Debian `chromium` through playwright (no browser download) and skip,
saying why, when either is missing; .ci/run installs chromium so they run in CI.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from lmforget.analysis import analyze, plots
from lmforget.analysis.html_report import build_payload, replay_summary, write_html_report
from lmforget.cli import main
from lmforget.errors import LmforgetError
from lmforget.matrix import ForgettingMatrix

EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> & </script>'
CHROMIUM = os.environ.get("LMFORGET_CHROMIUM", "/usr/bin/chromium")


def make(m: int = 9, n: int = 240, seed: int = 0) -> tuple[ForgettingMatrix, dict[str, str]]:
    rng = np.random.default_rng(seed)
    Z = (rng.standard_normal((m, 2)) @ rng.standard_normal((2, n)) * 0.05
         + 0.01 * rng.standard_normal((m, n))).astype(np.float32)
    fm = ForgettingMatrix(Z=Z, tasks=[f"task_{i}" for i in range(m)],
                          task_groups=["flan"] * (m - 3) + ["<b>tulu</b>"] * 3,
                          examples=[f"ex{j}" for j in range(n)], example_sources=rng.choice(["wiki", "cc"], n),
                          base_nll=rng.uniform(1, 3, n).astype(np.float32), meta={"model": "test"})
    texts = {f"ex{j}": f"Example {j}, first line.\nsecond line\nthird line\nfourth line" for j in range(n)}
    return fm, texts


def payload_of(html: str) -> dict:
    raw = re.search(r'<script type="application/json" id="lmforget-data">(.*?)</script>', html, re.S).group(1)
    return json.loads(raw)


def decode(s: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=np.dtype(dtype).newbyteorder("<"))


def test_payload_matches_the_matrix_and_the_analysis() -> None:
    fm, texts = make()
    result = analyze(fm, ranks=5, clip=0.1)
    p = build_payload(result, texts, task_top=4, example_top=3)
    layout = plots.make_layout(fm.Z, fm.task_groups)
    S = fm.Z[layout.row_order][:, layout.col_order]
    assert p["tasks"] == fm.tasks[layout.row_order].tolist()
    assert p["ex"]["ids"] == fm.examples[layout.col_order].tolist()
    heat = decode(p["heat"], "float32").reshape(len(p["tasks"]), p["bins"]["count"])
    np.testing.assert_allclose(heat, layout.bin(fm.Z), rtol=1e-6)
    for i, lists in enumerate(p["task_lists"]):  # most / least forgotten examples of each task
        assert [j for j, _ in lists["top"]] == np.argsort(-S[i], kind="stable")[:4].tolist()
        assert [v for _, v in lists["bottom"]] == pytest.approx(np.sort(S[i])[:4].tolist())
    k = p["ex"]["k"]
    top_task = decode(p["ex"]["top_task"], p["ex"]["top_task_type"]).reshape(-1, k)
    top_val = decode(p["ex"]["top_val"], "float32").reshape(-1, k)
    for j in (0, 17, S.shape[1] - 1):  # the tasks that forget each example most
        assert top_task[j].tolist() == np.argsort(-S[:, j], kind="stable")[:k].tolist()
        np.testing.assert_allclose(top_val[j], np.sort(S[:, j])[::-1][:k], rtol=1e-6)
    np.testing.assert_allclose(decode(p["ex"]["base"], "float32"), fm.base_nll[layout.col_order])
    # the analysis numbers are passed through, not recomputed
    assert p["r2"] == result["r2_by_rank"] and p["models"] == result["models"]
    c1 = result["components"][0]
    assert [p["tasks"][i] for i, _ in p["components"][0]["top_tasks"]] == [d["task"] for d in c1["top_tasks"]]
    assert [p["ex"]["ids"][j] for j, _ in p["components"][0]["top_examples"]] == \
        [d["example"] for d in c1["top_examples"]]
    with pytest.raises(LmforgetError, match="Analysis"):  # a re-read analysis.json has no matrix to show
        build_payload(json.loads(json.dumps(result)), texts)


def test_large_matrices_carry_texts_only_for_the_examples_listed() -> None:
    fm, texts = make(m=6, n=6000)
    p = build_payload(analyze(fm, ranks=3), texts, task_top=5)
    listed = {j for lists in p["task_lists"] for end in lists.values() for j, _ in end}
    listed |= {j for c in p["components"] for end in ("top_examples", "bottom_examples") for j, _ in c[end]}
    assert set(map(int, p["texts"])) == listed
    assert len(p["texts"]) < 200 and p["bins"]["count"] == plots.MAX_BINS


def test_file_is_self_contained_and_data_text_is_escaped(tmp_path: Path) -> None:
    fm, texts = make()
    texts["ex3"] = EVIL
    out = write_html_report(analyze(fm, ranks=3), tmp_path / "r.html", texts)
    html = out.read_text(encoding="utf-8")
    assert "window.__pwned" in html and "<script>window.__pwned" not in html and "<img src=x" not in html
    assert "<b>tulu</b>" not in html
    assert html.count("<script") == 2
    assert not re.search(r'\b(src|href)\s*=\s*"', html.replace('id="lmforget-data"', ""))  # nothing fetched
    assert "default-src 'none'" in html
    j = payload_of(html)["ex"]["ids"].index("ex3")
    assert payload_of(html)["texts"][str(j)] == EVIL  # the text survives intact, as data


def test_replay_summary_gives_t_intervals() -> None:
    from scipy import stats

    from lmforget.replay.stats import summarize

    F = np.array([[0.05, -0.08, -0.05], [0.04, -0.07, -0.06], [0.06, -0.09, -0.02]])
    res = summarize(F, ["none", "random", "oracle"], ["a", "b", "c"])
    s = replay_summary({**res, "n_heldout": 10, "n_pool": 20, "recipe": "x", "model": "m"})
    sem = F[:, 1].std(ddof=1) / np.sqrt(3)
    h = stats.t.ppf(0.975, 2) * sem
    assert s["methods"]["random"]["ci95"] == pytest.approx([F[:, 1].mean() - h, F[:, 1].mean() + h])
    assert s["methods"]["oracle"]["t_p"] == res["methods"]["oracle"]["vs_random"]["t_p"]
    assert s["methods"]["oracle"]["t_p_holm"] == res["methods"]["oracle"]["vs_random"]["t_p_holm"]


STUDY2 = Path("studies/smollm2-evals/runs/replay/results.json")  # a study that measured task gain


def test_replay_summary_puts_every_arm_on_the_pareto_chart() -> None:
    results = json.loads(STUDY2.read_text())
    par = replay_summary(results)["pareto"]
    gain = results["task_gain"]["methods"]
    assert {p["method"] for p in par["points"]} == set(gain) == set(results["methods"])
    assert par["n_tasks"] == len(results["tasks"]) and set(par["front"]) <= set(gain)
    for p in par["points"]:
        assert p["gain"] == gain[p["method"]]["mean_gain"]
        assert p["forgetting"] == pytest.approx(results["methods"][p["method"]]["mean_increase"], abs=1e-12)
    # the front: the arms no other arm beats on both axes (forgets no more, gains no less, one strictly)
    pts = {p["method"]: (p["forgetting"], p["gain"]) for p in par["points"]}
    dominated = {a for a, (f, g) in pts.items()
                 if any(f2 <= f and g2 >= g and (f2, g2) != (f, g) for b, (f2, g2) in pts.items() if b != a)}
    assert set(par["front"]) == set(pts) - dominated


def test_report_cli_from_a_matrix_file(tmp_path: Path, capsys) -> None:
    fm, texts = make()
    fm.save(tmp_path / "Z.npz")
    with open(tmp_path / "up.jsonl", "w", encoding="utf-8") as fh:
        for i, t in texts.items():
            fh.write(json.dumps({"id": i, "text": t, "source": "wiki"}) + "\n")
    assert main(["report", str(tmp_path / "Z.npz"), "--upstream", str(tmp_path / "up.jsonl"),
                 "-o", str(tmp_path / "r.html"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["texts"] == 240 and summary["bytes"] == (tmp_path / "r.html").stat().st_size
    assert len(payload_of((tmp_path / "r.html").read_text(encoding="utf-8"))["texts"]) == 240
    # bad input: one line on stderr, exit 2, nothing written
    assert main(["report", str(tmp_path / "up.jsonl"), "-o", str(tmp_path / "x.html")]) == 2
    assert main(["report", str(tmp_path / "Z.npz"), "-o", str(tmp_path)]) == 2
    assert main(["report", str(tmp_path / "Z.npz"), "--replay", str(tmp_path), "-o", str(tmp_path / "y.html")]) == 2
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "y.html").exists()
    assert capsys.readouterr().err.count("lmforget: error:") == 3


# ------------------------------------------------------------------------------ in a real browser
@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def open_page(browser, path: Path):
    """Open a report; collect console errors, page errors and any network request besides the file."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda req: errors.append(f"request {req.url}") if req.url != path.as_uri() else None)
    page.goto(path.as_uri())
    page.wait_for_function("window.__lmforgetReady !== undefined", timeout=20000)
    return page, errors


def test_report_works_in_chromium(browser, tmp_path: Path) -> None:
    from lmforget.replay.stats import summarize

    fm, texts = make()
    result = analyze(fm, ranks=5, clip=0.1)
    F = np.array([[0.05, -0.08], [0.04, -0.07], [0.06, -0.05]])
    replay = {**summarize(F, ["none", "random"], ["a", "b", "c"]), "n_heldout": 10, "n_pool": 20}
    out = write_html_report(result, tmp_path / "report.html", texts, replay=replay)
    page, errors = open_page(browser, out)
    assert page.locator("#task-top .item").count() == 10  # the first task is open on load
    # click the last row of the heatmap: its task opens with its most forgotten examples and their text
    box = page.locator("#heat").bounding_box()
    rows = len(fm.tasks)
    page.mouse.move(box["x"] + box["width"] - 30, box["y"] + box["height"] - 4 - 9)
    assert page.locator("#tip").is_visible() and "task_" in page.locator("#tip").inner_text()
    page.mouse.click(box["x"] + box["width"] - 30, box["y"] + box["height"] - 4 - 9)
    expected = payload_of(out.read_text(encoding="utf-8"))["tasks"][rows - 1]
    assert page.locator("#task-title").inner_text() == expected
    items = page.locator("#task-top .item")
    assert items.count() == 10 and "first line" in items.first.inner_text()
    # an example from the list: the tasks that forget it most
    page.locator("#task-top .item button.link").first.click()
    assert page.locator("#example-tasks .item").count() == 5
    page.locator("#example-tasks button.link").first.click()
    assert page.locator("#r2-chart circle").count() >= 5 and page.locator("#replay-chart circle").count() == 2
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert errors == []


def test_script_in_a_document_shows_as_text_in_chromium(browser, tmp_path: Path) -> None:
    fm, texts = make()
    texts["ex7"] = EVIL
    out = write_html_report(analyze(fm, ranks=3), tmp_path / "r.html", texts)
    page, errors = open_page(browser, out)
    page.fill("#search", "pwned")
    page.wait_for_selector("#hits .item button.link")
    page.locator("#hits .item button.link").first.click()
    assert page.locator("#example-title").inner_text() == "ex7"
    assert EVIL in page.locator("#example-body .text").inner_text()  # shown verbatim
    assert page.evaluate("window.__pwned") is None  # and never run
    assert page.locator("#example-body img, #example-body script").count() == 0
    page.select_option("#task-panel select", str(len(fm.tasks) - 1))  # a task of the group "<b>tulu</b>"
    assert "group <b>tulu</b> " in page.locator("#task-body .meta").inner_text()
    assert errors == []


def test_pareto_front_of_a_study_in_chromium(browser, tmp_path: Path) -> None:
    """`lmforget report --replay` on a study that measured task gain: every arm a dot, the front filled."""
    fm, texts = make()
    results = json.loads(STUDY2.read_text())
    out = write_html_report(analyze(fm, ranks=5, clip=0.1), tmp_path / "report.html", texts, replay=results)
    page, errors = open_page(browser, out)
    dots = page.locator("#pareto-chart circle")
    assert dots.count() == len(results["methods"])
    filled = [dots.nth(i).get_attribute("fill") for i in range(dots.count())]
    assert filled.count("#0b62a4") == len(results["pareto"]["front"])
    titles = [dots.nth(i).locator("title").text_content() for i in range(dots.count())]
    assert {t.split(":")[0] for t in titles} == set(results["methods"])
    # one label per arm, none covering another (study 2's weight-space arms sit close together)
    boxes = page.evaluate("""() => Array.from(document.querySelectorAll('#pareto-chart .pareto-label'))
        .map(t => { const b = t.getBBox(); return [t.textContent, b.x, b.y, b.width, b.height]; })""")
    assert sorted(b[0] for b in boxes) == sorted(results["methods"]) and all(b[3] > 0 for b in boxes)
    for i, (name, x, y, w, h) in enumerate(boxes):
        for other, x2, y2, w2, h2 in boxes[i + 1:]:
            assert x + w <= x2 + 0.5 or x2 + w2 <= x + 0.5 or y + h <= y2 + 0.5 or y2 + h2 <= y + 0.5, (name, other)
    assert page.locator("#pareto-chart .pareto-leader").count() >= 1  # some labels were set apart
    assert errors == []
