"""Rich progress bars (with ETA) on stderr, for fine-tuning steps and scoring."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column
from transformers import TrainerCallback

_console = Console(stderr=True)


def make_progress(transient: bool = False, console: Console | None = None) -> Progress:
    """One line per bar. On a narrow terminal the description (a task name) is cut with an ellipsis;
    the counts, loss and times always stay whole (they are what the user watches)."""
    def whole() -> Column:
        return Column(no_wrap=True, overflow="ignore")

    return Progress(TextColumn("[bold]{task.description}", table_column=Column(ratio=1, min_width=8, no_wrap=True,
                                                                               overflow="ellipsis")),
                    BarColumn(bar_width=16, table_column=whole()), MofNCompleteColumn(table_column=whole()),
                    TextColumn("{task.fields[info]}", table_column=whole()), TimeElapsedColumn(table_column=whole()),
                    TextColumn("eta", table_column=whole()), TimeRemainingColumn(table_column=whole()),
                    console=console or _console, transient=transient, expand=True)


@contextlib.contextmanager
def token_progress(enabled: bool, total: int, description: str = "scoring") -> Iterator[Callable[[int], None]]:
    """Yield `advance(n_tokens)`: a tokens bar with rate and ETA, or a no-op when disabled."""
    if not enabled:
        yield lambda n: None
        return
    bar = make_progress(transient=True)
    task = bar.add_task(description, total=total, info="tokens")
    with bar:
        yield lambda n: bar.advance(task, n)


class TrainProgress(TrainerCallback):
    """Optimizer steps with the latest loss and an ETA."""

    def __init__(self, description: str):
        self.description = description
        self._progress: Progress | None = None
        self._task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._progress = make_progress(transient=False)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=state.max_steps, info="")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._progress is not None and logs and "loss" in logs:
            self._progress.update(self._task, info=f"loss {logs['loss']:.4f}")

    def on_step_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
