"""A gate build's result forged in Redis (redteam2).

In `build.mode = gate` the ref moves only if the build passes. The push waited for the
build record in Redis to end and took its status as the verdict; whoever holds only the
Redis password (a leaked URL, a deploy agent's web host) ended a failing build as `passed`
before its worker did, and alice's push of a commit whose tests fail went in.

Now a worker that ends a build as passed seals that verdict (HMAC over build id, status and
commit with a key derived from secrets.key, which every worker holds and the Redis password
does not give), and the gate lets a ref move only on a sealed pass.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.server import make_server

pytestmark = pytest.mark.timeout(240)

CONF = """
repo gitolite-admin
    RW+ = admin
repo gated
    RW+ = alice
    option build.enable = 1
    option build.mode = gate
"""
FAILING = "#!/bin/sh\necho 'running the tests'\nsleep 3\necho 'tests FAILED'\nexit 1\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("gate-forge"), conf=CONF, users=("alice",))
    try:
        yield server
    finally:
        server.stop()


class Passer:
    """The attacker: ends every running build of `gated` as passed, as records.finish does."""

    def __init__(self, srv) -> None:
        import redis

        self.r = redis.Redis(unix_socket_path=str(srv.home / "run" / "redis.sock"))
        self.stop = threading.Event()
        self.forged: list[str] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        from buildqueue import records

        while not self.stop.is_set():
            for key in self.r.scan_iter("gitserve:build:*"):
                name = key.decode().split(":")
                if len(name) != 3 or self.r.type(key) != b"hash":
                    continue
                repo, status = self.r.hmget(key, "repo", "status")
                if repo == b"gated" and status in (b"queued", b"running"):
                    if records.finish(self.r, name[2], "passed", "forged"):
                        self.forged.append(name[2])
            time.sleep(0.01)

    def __enter__(self) -> Passer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.r.close()


def test_a_forged_pass_does_not_open_the_gate(srv):
    work = srv.clone("alice", "gated")
    script = work / ".gitserve" / "build"
    script.parent.mkdir(parents=True)
    script.write_text(FAILING)
    script.chmod(0o755)
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-qm", "tests fail", cwd=work)
    with Passer(srv) as attacker:
        res = srv.git("alice", "push", "origin", "HEAD:refs/heads/main", cwd=work, timeout=180,
                      check=False)
    assert attacker.forged, "the attacker never caught the build: the test proved nothing"
    heads = srv.git("alice", "ls-remote", srv.url("gated")).stdout
    assert "refs/heads/main" not in heads, (heads, res.stderr)
    assert res.returncode != 0 and "not sealed" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
