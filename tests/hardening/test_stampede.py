"""A CI runner behind one NAT address starts 50 clones at once while another address floods
the server with 300 connections that never speak (#19: 12-25 of 50 clones failed on a busy
machine). With the limits `gitserve init` ships, every clone must succeed. Real git + ssh."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gitserve.settings import ServerSettings
from tests.hardening import floodkit

pytestmark = pytest.mark.timeout(300)

CONF = "repo gitolite-admin\n    RW+ = admin\nrepo foo\n    RW+ = alice\n"


class Flood:
    """N silent connections from SRC, re-opened as the server closes them."""

    def __init__(self, src: str, host: str, port: int, n: int) -> None:
        self.args = (src, host, port)
        self.n = n
        self.stop = threading.Event()
        self.refused = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        socks: list[socket.socket] = []
        try:
            while not self.stop.is_set():
                while len(socks) < self.n and not self.stop.is_set():
                    try:
                        socks.append(floodkit.connect_from(*self.args, timeout=2.0))
                    except OSError:
                        break
                for s in list(socks):
                    if floodkit.is_closed_by_peer(s):
                        socks.remove(s)
                        s.close()
                        self.refused += 1
                self.stop.wait(0.1)
        finally:
            for s in socks:
                s.close()


def test_50_clones_from_one_address_during_a_flood_from_another(gitserve_factory):
    srv = gitserve_factory(users=("alice",), conf=CONF, settings={"builds": {"workers": 0}})
    shipped = ServerSettings()
    assert srv.settings.server.max_unauth_per_ip == shipped.max_unauth_per_ip  # no bench tuning
    work = srv.clone("alice", "foo")
    srv.commit("alice", work, "README", "hello\n")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    flood = Flood("127.0.0.2", srv.host, srv.port, 300)
    flood.thread.start()
    try:
        deadline = time.monotonic() + 10
        while flood.refused < 50 and time.monotonic() < deadline:  # the flood is biting
            time.sleep(0.1)

        def one(i: int) -> str:
            r = srv.git("alice", "clone", "-q", srv.url("foo"), str(srv.tmp / "stampede" / str(i)),
                        check=False, timeout=240)
            return "" if r.returncode == 0 else r.stderr.strip()

        with ThreadPoolExecutor(50) as pool:
            failed = [e for e in pool.map(one, range(50)) if e]
    finally:
        flood.stop.set()
        flood.thread.join(timeout=30)
    assert not failed, f"{len(failed)}/50 clones failed; first: {failed[0]}"
    assert all((srv.tmp / "stampede" / str(i) / "README").read_text() == "hello\n"
               for i in range(50))
