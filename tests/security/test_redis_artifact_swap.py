"""A Redis writer swapping a passed build's deploy artifact (redteam2).

Jobs are signed (gitserve/secrets/crypt.sign_job), but the release a deploy job publishes
travelled beside it, unsigned: the build worker stores the deploy.dir output as a tar.gz
under `gitserve:build:ID:artifact` and the deploy worker took whatever bytes it found there.
Whoever holds only the Redis password (a leaked URL, a deploy agent's web host, which needs
that password but never secrets.key) watched for the key and replaced it between the
hand-over and the deploy: his files went live under the signed job of alice's push (a
Procfile in them would run as the site, with the repo's secrets in its environment).

Now the signed deploy job carries the artifact's sha256 and the deploy worker refuses bytes
that do not match, with one line; the live release stays.
"""

from __future__ import annotations

import io
import re
import tarfile
import threading
import time

import pytest

from tests.support.sitekit import get, site_commit, site_server, stop_site_server

pytestmark = pytest.mark.timeout(300)

CONF = """repo web
    RW+ = alice
    option build.enable = 1
    option deploy.site = www
    option deploy.port = 127.0.0.1:{live}
    option deploy.preview-port = {preview}
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = site_server(tmp_path_factory.mktemp("artifact-swap"), CONF, users=("alice",))
    try:
        yield server
    finally:
        stop_site_server(server)


def evil_artifact() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        body = b"DEFACED by a Redis writer\n"
        info = tarfile.TarInfo("index.html")
        info.size, info.mode = len(body), 0o644
        tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


class Swapper:
    """The attacker: the Redis password and nothing else. Replaces every deploy artifact
    as soon as a build worker stores one."""

    def __init__(self, srv) -> None:
        import redis

        self.r = redis.Redis(unix_socket_path=str(srv.home / "run" / "redis.sock"))
        self.stop = threading.Event()
        self.swapped: list[str] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        evil = evil_artifact()
        while not self.stop.is_set():
            for key in self.r.keys("gitserve:build:*:artifact"):
                if self.r.get(key) != evil:
                    self.r.set(key, evil, keepttl=True)
                    self.swapped.append(key.decode())
            time.sleep(0.001)

    def __enter__(self) -> Swapper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.r.close()


def test_a_swapped_artifact_never_goes_live(srv):
    work = srv.clone("alice", "web")
    site_commit(srv, "alice", work, "alice v1")
    out = srv.git("alice", "push", "origin", "HEAD:main", cwd=work, timeout=180).stderr
    assert "Enable: blue" in out, out
    assert get(srv.ports["live"]) == (200, "alice v1\n")

    site_commit(srv, "alice", work, "alice v2")
    with Swapper(srv) as attacker:
        out = srv.git("alice", "push", "origin", "HEAD:main", cwd=work, timeout=180).stderr
    assert attacker.swapped, "the attacker never saw the artifact: the test proved nothing"
    assert get(srv.ports["live"]) == (200, "alice v1\n"), out
    assert "DEFACED" not in out and "Enable:" not in out, out
    line = [ln for ln in out.splitlines() if "artifact" in ln]
    assert line and re.search(r"deploy refused: the deploy artifact in Redis is not the one "
                              r"build \d+ made", line[0]), out
    assert "Traceback" not in out, out
