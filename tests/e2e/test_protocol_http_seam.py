"""The seam smart HTTP will use (ARCHITECTURE.md, "Protocol v2 and its transports"), proven
with the real git client: a minimal stateless-rpc WSGI app in this test drives
`v2.UploadPackV2` (one `serve_command()` per POST) and v0's `upload.UploadPack` with
`stateless_rpc`, over HTTP on 127.0.0.1. Clones, shallow deepening, partial clone with lazy
fetches and the hidden-ref rules must all work without any state between requests."""

from __future__ import annotations

import gzip
import io
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from dulwich.errors import GitProtocolError
from dulwich.protocol import pkt_line

from gitserve.git.repo import SingleRepoBackend
from gitserve.git.sideband import SidebandProtocol
from gitserve.git.upload import UploadPack
from gitserve.git.v2 import UploadPackV2, requested_version
from tests.support.tools import free_port, require_tool

pytestmark = pytest.mark.timeout(300)
HIDDEN = "refs/gitserve/builds/1"
ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path | None, *args: str, check: bool = True, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False,
                       env={**ENV, "HOME": str(cwd or "/tmp"), **(env or {})}, timeout=120)
    if check and r.returncode:
        raise AssertionError(f"git {' '.join(args)}: {r.stderr}")
    return r


def app(repo_path: str) -> Any:
    """Smart HTTP for one repository, upload-pack only, v0 and v2, stateless."""

    def wsgi(environ: dict, start_response: Any) -> Iterator[bytes]:
        version = requested_version(environ.get("HTTP_GIT_PROTOCOL"))
        out = io.BytesIO()
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if environ.get("HTTP_CONTENT_ENCODING") == "gzip":
            body = gzip.decompress(body)
        proto = SidebandProtocol(io.BytesIO(body).read, out.write)
        repo_backend = SingleRepoBackend(repo_path)
        path = environ["PATH_INFO"]
        if path.endswith("/info/refs"):
            kind = "advertisement"
            if version == 2:  # git's http-backend: no `# service` preamble for v2
                UploadPackV2(repo_backend.open_repository(repo_path), proto).advertise()
            else:
                out.write(pkt_line(b"# service=git-upload-pack\n") + b"0000")
                UploadPack(repo_backend, [repo_path], proto, stateless_rpc=True,
                           advertise_refs=True).handle()
        elif path.endswith("/git-upload-pack"):
            kind = "result"
            if version == 2:
                UploadPackV2(repo_backend.open_repository(repo_path), proto).serve_command()
            else:
                try:
                    UploadPack(repo_backend, [repo_path], proto, stateless_rpc=True).handle()
                except GitProtocolError:
                    pass  # the `ERR ...` line is already in the body: the client shows it
            proto.flush()
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return iter([b"not found\n"])
        start_response("200 OK", [("Content-Type", f"application/x-git-upload-pack-{kind}"),
                                  ("Cache-Control", "no-cache")])
        return iter([out.getvalue()])

    return wsgi


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    require_tool("git")
    tmp = tmp_path_factory.mktemp("http-seam")
    w = tmp / "w"
    git(tmp, "init", "-q", "-b", "main", str(w))
    shas = {}
    for i in range(6):
        (w / "d").mkdir(exist_ok=True)
        (w / "d" / f"f{i}.txt").write_text(f"{i}\n" * 50)
        git(w, "add", "-A")
        git(w, "commit", "-q", "-m", f"c{i}")
        shas[i] = git(w, "rev-parse", "HEAD").stdout.strip()
    git(w, "tag", "-a", "-m", "t", "v1", shas[2])
    (w / "secret").write_text("hidden\n")
    git(w, "add", "-A")
    git(w, "commit", "-q", "-m", "hidden")
    shas["hidden"] = git(w, "rev-parse", "HEAD").stdout.strip()
    bare = tmp / "proj.git"
    git(tmp, "clone", "-q", "--bare", str(w), str(bare))
    git(bare, "update-ref", HIDDEN, shas["hidden"])
    git(bare, "update-ref", "refs/heads/main", shas[5])
    port = free_port()
    server = make_server("127.0.0.1", port, app(str(bare)), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/proj.git", {k: str(v) for k, v in shas.items()}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.parametrize("version", ["0", "2"])
def test_clone_deepen_and_blobless_over_stateless_http(http, tmp_path: Path,
                                                       version: str) -> None:
    url, shas = http
    pv = ["-c", f"protocol.version={version}"]
    trace = tmp_path / "trace"
    full = tmp_path / "full"
    git(tmp_path, *pv, "clone", "-q", url, str(full), env={"GIT_TRACE_PACKET": str(trace)})
    assert ("version 2" in trace.read_text()) == (version == "2")
    assert git(full, "rev-parse", "HEAD").stdout.strip() == shas[5]
    assert git(full, "rev-parse", "v1^{commit}").stdout.strip() == shas[2]
    shallow = tmp_path / "shallow"
    git(tmp_path, *pv, "clone", "-q", "--depth", "1", url, str(shallow))
    git(shallow, *pv, "fetch", "-q", "--deepen", "2")
    assert git(shallow, "rev-list", "--count", "HEAD").stdout.strip() == "3"
    lazy = tmp_path / "lazy"
    git(tmp_path, *pv, "clone", "-q", "--filter=blob:none", url, str(lazy))
    assert (lazy / "d" / "f0.txt").read_text() == "0\n" * 50  # blobs fetched lazily by id
    refs = git(tmp_path, *pv, "ls-remote", url).stdout
    assert "refs/gitserve" not in refs
    refused = git(full, *pv, "fetch", url, shas["hidden"], check=False)
    assert refused.returncode != 0 and "not our ref" in refused.stderr
