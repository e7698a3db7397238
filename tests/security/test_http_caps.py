"""Issue 21 finding 6 (HTTP): an anonymous 495 KiB protocol-v2 request (gzip) drove the
server to 1.3 GiB and 56 s of CPU; 210 slow-header connections made every HTTP request 503
for 80 s. Now an upload-pack request is capped after gunzip (`[http] max_request_bytes`), a
client has `[http] header_timeout` to send its headers, and one address holds at most
`[http] max_connections_per_ip` connections.

Both failed before the fix: the gzip bomb took the server past 500 MB, and with 210 slow
connections a normal request got 503.
"""

from __future__ import annotations

import gzip
import http.client
import socket
import time
from pathlib import Path

import pytest

from tests.support.httpkit import make_http_server

pytestmark = pytest.mark.timeout(180)

CONF = """
repo gitolite-admin
    RW+ = admin
repo pub
    RW+ = alice
    R = daemon
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = make_http_server(tmp_path_factory.mktemp("http-caps"), conf=CONF, users=("alice",),
                              settings={"http": {"header_timeout": 3.0, "max_connections_per_ip": 32}})
    try:
        work = server.clone("alice", "pub")
        server.commit("alice", work, content="pub\n")
        server.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
        yield server
    finally:
        server.stop()


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def request(srv, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 30) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_a_gzip_bomb_of_want_lines_is_cut_at_the_request_cap(srv):
    # one real want, then 64 MiB of have lines (v2 collects a request's arguments first)
    main = srv.git("alice", "ls-remote", srv.url("pub"), "refs/heads/main").stdout.split()[0]
    have = b"0032have " + b"1" * 40 + b"\n"
    v2 = (b"0012command=fetch\n0001" + b"0032want " + main.encode() + b"\n"
          + have * ((64 << 20) // len(have)) + b"0009done\n0000")
    body = gzip.compress(v2, 9)
    assert len(body) < 1 << 20  # under a MiB on the wire, 64 MiB inflated
    before = rss(srv.proc.pid)
    started = time.monotonic()
    status, answer = request(srv, "POST", "/pub.git/git-upload-pack", body,
                             {"Content-Type": "application/x-git-upload-pack-request",
                              "Content-Encoding": "gzip", "Git-Protocol": "version=2"})
    took = time.monotonic() - started
    assert took < 20, took
    assert b"request too large" in answer, (status, answer[:300])
    assert rss(srv.proc.pid) - before < 200 << 20, (before, rss(srv.proc.pid))


def test_slow_headers_cannot_take_the_server(srv):
    slow = []
    try:
        for _ in range(210):  # from another loopback address than the real client's
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.settimeout(10)
            try:
                s.connect(("127.0.0.1", srv.http_port))
                s.sendall(b"GET /pub.git/info/refs HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                s.close()
                continue
            slow.append(s)
        # the real client is served at once
        started = time.monotonic()
        status, _ = request(srv, "GET", "/pub.git/info/refs?service=git-upload-pack", timeout=10)
        assert status == 200 and time.monotonic() - started < 2
        # past 32 connections from 127.0.0.2: answered 503 and closed at once
        refused = 0
        for s in slow[32:]:
            try:
                data = s.recv(200)
            except OSError:
                data = b""
            refused += data.startswith(b"HTTP/1.1 503") or data == b""
        assert refused == len(slow) - 32, refused
        # the ones admitted get header_timeout (3 s) to finish their headers, then are closed
        deadline = time.monotonic() + 10
        for s in slow[:32]:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                assert s.recv(200) == b""
            except TimeoutError:
                pytest.fail("a slow-header connection was kept past header_timeout")
    finally:
        for s in slow:
            s.close()
