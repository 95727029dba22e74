"""Progress bars stay legible on an 80-column terminal: long task names are cut, never the numbers."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from lmforget.progress import make_progress

LONG = "[3/85] subtask036_qasc_topic_word_to_generate_related_fact"


@pytest.mark.parametrize("width", [80, 100])
def test_long_task_names_are_cut_not_the_numbers(width: int) -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None)
    bar = make_progress(console=console)
    train = bar.add_task(LONG, total=1000, info="loss 6.4414")
    bar.update(train, completed=123)
    score = bar.add_task("scoring " + LONG, total=163840, info="tokens")
    bar.update(score, completed=12345)
    console.print(bar.get_renderable())
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2, lines  # one line per bar: nothing wrapped
    for line, numbers in zip(lines, (["123/1000", "loss 6.4414"], ["12345/163840", "tokens"]), strict=True):
        assert len(line) <= width
        for text in numbers + ["0:00:00", "eta"]:
            assert text in line, line
    assert lines[0].startswith("[3/85] subtask") and "…" in lines[0]  # the name is what gets cut
