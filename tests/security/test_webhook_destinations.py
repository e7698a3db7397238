"""Issue 21 finding 7 (webhooks): a `notify.webhook` URL had no destination filter, so whoever
writes the conf made the server POST signed build events into its own network: the server's
/metrics, a local admin port, cloud metadata (169.254.169.254). Loopback, link-local and
private destinations are refused now unless `[notify] allow_private = true`, with one line in
the delivery log; nothing is sent to them.

Failed before the fix: the receiver on 127.0.0.1 got the POST.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid

import pytest

from tests.support.server import GitServer

pytestmark = pytest.mark.timeout(180)


class _Receiver(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        _Receiver.hits.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def srv(gitserve_module_factory, receiver) -> GitServer:
    conf = f"""
repo gitolite-admin
    RW+ = admin
repo hooked
    RW+ = alice
    option build.enable = 1
    option notify.events = build
    option notify.webhook = http://127.0.0.1:{receiver}/loop http://localhost:{receiver}/name
"""
    return gitserve_module_factory(conf=conf, users=("alice",),
                                   settings={"notify": {"attempts": 3, "backoff": 0.1}})


def test_webhooks_to_loopback_are_refused(srv):
    work = srv.clone("alice", "hooked")
    script = work / ".gitserve" / "build"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!/bin/sh\necho {uuid.uuid4().hex}\n")
    script.chmod(0o755)
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-q", "-m", "hook me", cwd=work)
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work, timeout=120)
    log = srv.home / "logs" / "notify.log"
    deadline = time.monotonic() + 60
    while not (log.exists() and len(log.read_text().splitlines()) >= 2):
        assert time.monotonic() < deadline, "no delivery recorded"
        time.sleep(0.1)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(entries) == 2 and all(e["result"] == "failed" for e in entries), entries
    assert all("destination refused: 127.0.0.1 is a loopback address" in e["error"] for e in entries), entries
    assert all(e["attempts"] == 1 for e in entries)  # refused at once, never retried
    assert _Receiver.hits == []
