"""The one driver loop: a work directory's units go to an executor, each result is written as it comes back,
a failure is recorded and the other units go on; at the end one error names every failed unit.

`collect` (tasks), the replay study (task x method cells) and `lmforget similarity` (measures) differ only in
their units and in how a result is written, which they pass in; the failure semantics are these for all:
a failed unit's error and traceback go to its error record (`WorkDir.error_path`), `lmforget status` shows it
failed, and a re-run retries only the units without a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from lmforget.errors import LmforgetError
from lmforget.executor import Executor
from lmforget.status import Tracker
from lmforget.workdir import WorkDir


@dataclass
class Unit:
    """One executor call: `fn(*args)` under `key`. `parts`: the units of the work directory it fills (default:
    the one named `key`); a replay arm's training also fills its WiSE-FT cells."""

    key: str
    args: tuple
    parts: list[str] = field(default_factory=list)


def drive(workdir: WorkDir | None, ex: Executor, fn: Callable, units: list[Unit],
          write: Callable[[str, Any], Iterable[str]], *, noun: str, log: Callable[[str], None] = lambda s: None,
          tracked: list[str] | None = None, record: bool = True, single_gpu: Iterable[str] = (),
          after_each: Callable[[], None] = lambda: None) -> None:
    """Run `units` on `ex`; `write(key, value)` stores a unit's result and returns the parts it finished.

    `tracked`: every unit of this invocation, finished ones included (for `lmforget status`); `record=False`
    (the other ranks of a launch, or no work directory) writes no progress or error file. Raises
    LmforgetError naming the failed units (`noun`: what they are, e.g. "task") once all others are done.
    """
    from lmforget.launch import close_vllm_engine

    parts = {u.key: u.parts or [u.key] for u in units}
    tracker = Tracker(workdir, ex.kind, enabled=record and workdir is not None, units=tracked)

    def started(key: str) -> None:
        for part in parts[key]:
            tracker.started(part)

    failed: dict[str, str] = {}
    try:
        for out in ex.map(fn, [(u.key, u.args) for u in units], on_start=started, single_gpu=single_gpu):
            if out.error is not None:
                for part in parts[out.key]:
                    failed[part] = out.error
                    tracker.failed(part, out.error, out.detail)
                    log(f"failed {part}: {out.error}")
            else:
                for part in write(out.key, out.value):
                    tracker.finished(part)
            after_each()
    finally:
        tracker.close()
        close_vllm_engine()  # a local unit's scoring engine
    if failed:
        first = sorted(failed)[0]
        where = f"; errors in {workdir.error_path(first).parent}" if workdir is not None and record else ""
        raise LmforgetError(f"{len(failed)} {noun}(s) failed: {', '.join(sorted(failed))} (first: {failed[first]}"
                            f"{where}); re-run the same command to retry them")
