"""Talking to a Python package index (PEP 503/691 simple API): which files it lists, and their addresses.

One page reader for both uses: `resources check` asks whether a pinned file is still listed, and
`resources fetch` finds the download address of a source archive. The index is `index_url`, else
`$PIP_INDEX_URL`, else PyPI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DEFAULT_INDEX = "https://pypi.org/simple"


def normal_name(project: str) -> str:
    """The normalised project name (PEP 503): runs of -, _ and . become one -, lower case."""
    return re.sub(r"[-_.]+", "-", project).lower()


def project_page(project: str, index_url: str | None = None) -> str:
    index = (index_url or os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX).rstrip("/")
    return f"{index}/{normal_name(project)}/"


def listed_files(project: str, index_url: str | None = None, timeout: float = 20) -> dict[str, str]:
    """{file name: absolute URL} of every file the index lists for `project` ({} when it has no page).

    Asks for the JSON form (PEP 691) and reads the HTML page when that is what comes back. Network
    errors (OSError) and a malformed page (ValueError) propagate: the caller decides what they mean.
    """
    page = project_page(project, index_url)
    req = urllib.request.Request(page, headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read().decode("utf-8", "replace")
            ctype = resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {}
        raise
    if "json" in ctype:
        return {f["filename"]: urllib.parse.urljoin(page, f["url"]) for f in json.loads(body).get("files", [])
                if f.get("filename") and f.get("url")}
    out = {}
    for href in re.findall(r'href="([^"]+)"', body):
        url = href.split("#")[0]
        out[urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])] = urllib.parse.urljoin(page, url)
    return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
