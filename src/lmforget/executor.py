"""Where independent units of work run: one after another in this process, or as Ray tasks.

`collect` (one unit per task row, plus the base scoring), the replay study (one per task x method
cell) and `lmforget similarity` (one per measure) hand a module-level function and a list of keyed
argument tuples to `Executor.map`; outcomes come back, in completion order, to the caller, which alone
writes files. Workers never write the run directory, so a cluster needs no shared filesystem.

Both executors have one interface:

    with open_executor(cfg) as ex:
        shared = ex.put(big_object)                 # once: Ray's object store, or the object itself
        for out in ex.map(fn, [(key, (shared, x)), ...], on_start=...):
            out.key, out.value, out.error           # error: one line; out.detail: the traceback

A unit that raises is reported (error, traceback), not retried: a deterministic failure would only fail
again. A Ray worker process or node that dies is retried by Ray (`max_retries`).
"""

from __future__ import annotations

import os
import signal
import socket
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from lmforget.config import ExecutorConfig
from lmforget.errors import LmforgetError

# Fault injection for tests and drills: LMFORGET_FAULT="POINT:MARKER[,POINT:MARKER...]" makes the first
# process that reaches the named point SIGKILL itself, once (the marker file records that it happened).
KINDS = ("local", "ray")  # the executors `open_executor` opens (recipe key executor.kind)
FAULT_ENV = "LMFORGET_FAULT"


def fault_point(name: str) -> None:
    """Die here (SIGKILL, once per marker file) if LMFORGET_FAULT names this point."""
    for spec in filter(None, os.environ.get(FAULT_ENV, "").split(",")):
        point, _, marker = spec.partition(":")
        if point != name or not marker:
            continue
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Outcome:
    key: str
    value: Any = None
    error: str | None = None  # one line; None = success
    detail: str = ""  # traceback of the failure


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(exc, LmforgetError) else f"{type(exc).__name__}: {msg}".rstrip(": ")


def _call(fn: Callable, *args) -> tuple[str, Any, str]:
    """Run a unit and turn an exception into data, so it travels back like a result."""
    try:
        return "ok", fn(*args), ""
    except Exception as exc:  # noqa: BLE001 - every failure is reported with its traceback
        return "error", _one_line(exc), traceback.format_exc()


class LocalExecutor:
    """Units one after another in this process (the default; works under `accelerate launch`)."""

    kind = "local"

    def put(self, obj: Any) -> Any:
        return obj

    def map(self, fn: Callable, items: Iterable[tuple[str, tuple]],
            on_start: Callable[[str], None] = lambda key: None, single_gpu: Iterable[str] = ()) -> Iterator[Outcome]:
        for key, args in items:
            on_start(key)
            status, value, detail = _call(fn, *args)
            yield Outcome(key, value) if status == "ok" else Outcome(key, error=value, detail=detail)

    def close(self) -> None:
        pass


def _import_ray():
    try:
        import ray
    except ImportError:
        raise LmforgetError("the ray executor needs the 'ray' package: pip install 'lmforget[ray]'") from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail fast, in one line, when nothing listens at host:port (Ray itself retries for a minute)."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise LmforgetError(f"executor address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise LmforgetError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); "
                            "start it with `ray start --head` or fix --address") from None


def local_start(cfg: ExecutorConfig) -> dict:
    """ray.init options of a local instance started here (not of a cluster joined by address).

    - Workers at the driver's niceness: Ray starts them at nice +15 so that other processes come first, but
      here they are the job, and at +15 any other busy process starves them (measured on 2 cores: two
      collect workers got 10% of a core each beside two processes at the driver's niceness).
    - At most `max_retries` retries of a unit that Ray's memory monitor kills: Ray's default retries it
      forever, so a machine whose memory other processes fill retrains the same units without end (measured
      on 2 cores, 24 GiB: 17 kills in 10 minutes, no row finished). A unit killed once more fails with one
      line that says so, and the command's next run resumes.
    """
    return {"include_dashboard": False,
            "_system_config": {"worker_niceness": 0, "task_oom_retries": cfg.max_retries}}


def runtime_env() -> dict:
    """Ship this lmforget package to the workers, so they run exactly the driver's code."""
    import lmforget

    return {"py_modules": [os.path.dirname(lmforget.__file__)],
            "env_vars": {"TOKENIZERS_PARALLELISM": "false"}}


def remote_options(cfg: ExecutorConfig, gpus: float) -> dict:
    """Ray task options of a unit that uses `gpus` GPUs (> 1: Ray Train books them, the unit none).

    A unit holding a GPU runs in a worker process of its own (`max_calls=1`): a reused one would keep
    a vLLM engine and allocator caches on the GPU while Ray schedules the next GPU unit beside it. Ray
    sets this default only in `ray.remote(...)`, and `.options()` cannot set it, so it goes there.
    """
    opts: dict = dict(num_cpus=cfg.cpus_per_task if gpus <= 1 else 0, num_gpus=gpus if gpus <= 1 else 0,
                      max_retries=cfg.max_retries, retry_exceptions=False)
    if gpus > 0:
        opts["max_calls"] = 1
    fault = os.environ.get(FAULT_ENV)
    if fault:  # the drill travels to the workers (merged with the job's runtime env)
        opts["runtime_env"] = {"env_vars": {FAULT_ENV: fault}}
    return opts


def _call_unit(fn: Callable, *args) -> tuple[str, Any, str]:
    """`_call` in a Ray worker: a vLLM engine the unit built is closed (and its weights folder removed)
    before the worker goes, since a worker's exit runs no cleanup."""
    from lmforget.launch import close_vllm_engine

    try:
        return _call(fn, *args)
    finally:
        close_vllm_engine()


class RayExecutor:
    """One Ray task per unit. Without an address a local Ray instance is started here and stopped on close.

    If Ray is already initialised in this process (a notebook, the test suite), that connection is used
    and left open.
    """

    kind = "ray"

    def __init__(self, cfg: ExecutorConfig) -> None:
        ray = _import_ray()
        self.ray, self.cfg, self._owns = ray, cfg, False
        if not ray.is_initialized():
            if cfg.address:
                _check_reachable(cfg.address)
            try:
                ray.init(address=cfg.address or "local", runtime_env=runtime_env(), log_to_driver=False,
                         configure_logging=False, **({} if cfg.address else local_start(cfg)))
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise LmforgetError(f"cannot start or join Ray ({_one_line(exc)})") from None
            self._owns = True

    def put(self, obj: Any) -> Any:
        return self.ray.put(obj)

    def _remote(self, gpus: float):
        return self.ray.remote(**remote_options(self.cfg, gpus))(_call_unit)

    def _capacity(self) -> int:
        """Units the cluster can run at once now, so that 'submitted' means 'running' (status, ETA)."""
        total = self.ray.cluster_resources()
        gpus = self.cfg.gpus_per_task
        fits = total.get("CPU", 1) // self.cfg.cpus_per_task
        if gpus:
            if total.get("GPU", 0) < gpus:
                raise LmforgetError(f"executor.gpus_per_task={gpus:g} but the Ray cluster has "
                                    f"{total.get('GPU', 0):g} GPU(s); add GPU nodes or set executor.gpus_per_task=0")
            fits = min(fits, total.get("GPU", 0) // gpus)
        return max(1, int(fits))

    def map(self, fn: Callable, items: Iterable[tuple[str, tuple]],
            on_start: Callable[[str], None] = lambda key: None, single_gpu: Iterable[str] = ()) -> Iterator[Outcome]:
        """`single_gpu`: keys of units that use one GPU even when gpus_per_task > 1 (scoring alone)."""
        ray, remote = self.ray, self._remote(self.cfg.gpus_per_task)
        one_gpu, single = self._remote(min(self.cfg.gpus_per_task, 1)), set(single_gpu)
        queue = list(items)
        limit = self.cfg.max_concurrent or self._capacity()
        pending: dict = {}
        while queue or pending:
            while queue and len(pending) < limit:
                key, args = queue.pop(0)
                pending[(one_gpu if key in single else remote).remote(fn, *args)] = key
                on_start(key)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                key = pending.pop(ref)
                try:
                    status, value, detail = ray.get(ref)
                except ray.exceptions.OutOfMemoryError as exc:  # killed by Ray's memory monitor, every retry
                    started_here = self._owns and not self.cfg.address  # with local_start's retry limit
                    times = f" {self.cfg.max_retries + 1} times" if started_here else ""
                    yield Outcome(key, error=f"killed for lack of memory{times} by Ray's memory monitor (the "
                                             "node's memory, whoever used it, passed Ray's threshold): run fewer "
                                             "units at once (executor.max_concurrent=1) or free memory, and run "
                                             "the command again", detail=str(exc))
                    continue
                except ray.exceptions.RayError as exc:  # the worker died more often than max_retries allows
                    yield Outcome(key, error=f"Ray task failed ({type(exc).__name__}) after "
                                             f"{self.cfg.max_retries} retries", detail=str(exc))
                    continue
                yield Outcome(key, value) if status == "ok" else Outcome(key, error=value, detail=detail)

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()


Executor = LocalExecutor | RayExecutor


@contextmanager
def open_executor(cfg: ExecutorConfig | None) -> Iterator[Executor]:
    ex: Executor = RayExecutor(cfg) if cfg is not None and cfg.kind == "ray" else LocalExecutor()
    try:
        yield ex
    finally:
        ex.close()


def one_gpu_per_unit(cfg: ExecutorConfig) -> ExecutorConfig:
    """The same executor with at most one GPU per unit (units that have no Ray Train path)."""
    return cfg.model_copy(update={"gpus_per_task": min(cfg.gpus_per_task, 1)})


def executor_config(base: ExecutorConfig, kind: str | None = None, address: str | None = None) -> ExecutorConfig:
    """The recipe's executor section with command-line choices on top (--address implies ray)."""
    data = base.model_dump()
    if address:
        data.update(kind="ray", address=address)
    if kind:
        if kind not in KINDS:
            raise LmforgetError(f"unknown executor {kind!r} (choose {' or '.join(KINDS)})")
        data["kind"] = kind
    return ExecutorConfig(**data)
