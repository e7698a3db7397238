"""The admission rules under a flood, without sockets: eviction of stalled handshakes keeps the
counters exact, and a fresh handshake is never evicted."""

from __future__ import annotations

import socket
import threading
import time

from gitserve.ssh import limits


class Handle:
    def __init__(self) -> None:
        self.shut = False

    def shutdown(self, how: int) -> None:
        self.shut = True


def test_newcomer_evicts_the_oldest_stalled_handshake(monkeypatch):
    monkeypatch.setattr(limits, "EVICT_AFTER", 0.0)
    a = limits.Admission(100, 2, 2, 10)
    h1, h2, h3 = Handle(), Handle(), Handle()
    for h in (h1, h2):
        assert a.admit("10.0.0.1") is None and a.start_auth("10.0.0.1", 0, h) is None
    assert a.admit("10.0.0.2") is None and a.start_auth("10.0.0.2", 0, h3) is None
    assert h1.shut and not h2.shut and a.evictions == 1
    assert a.unauth == 2
    # the evicted connection's thread cleans up later: counted once, not twice
    a.closed("10.0.0.1", True, h1)
    assert a.unauth == 2 and a.connections == 2
    a.authenticated("10.0.0.2", h3)
    a.closed("10.0.0.1", True, h2)
    assert a.unauth == 0 and a.connections == 1


def test_fresh_handshakes_are_not_evicted():
    a = limits.Admission(100, 1, 1, 10)
    h1 = Handle()
    assert a.admit("10.0.0.1") is None and a.start_auth("10.0.0.1", 0, h1) is None
    assert a.admit("10.0.0.2") is None
    assert a.start_auth("10.0.0.2", 0.1, Handle()) == "too many unauthenticated connections"
    assert not h1.shut


def test_counters_stay_exact_under_concurrency(monkeypatch):
    monkeypatch.setattr(limits, "EVICT_AFTER", 0.0)
    a = limits.Admission(10_000, 20, 5, 10)

    def client(i: int) -> None:
        ip = f"10.0.{i % 7}.1"
        if a.admit(ip) is not None:
            return
        h = Handle()
        held = a.start_auth(ip, 0.05, h) is None
        if held and i % 3 == 0 and not h.shut:
            a.authenticated(ip, h)
            held = False
        a.closed(ip, held, h)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(400)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.unauth == 0 and a.connections == 0 and not a._pending


def test_one_address_holds_at_most_its_share_of_pending_connections():
    a = limits.Admission(200, 50, 25, 10, max_pending_per_ip=3)
    for _ in range(3):
        assert a.admit("10.0.0.9") is None
    assert a.admit("10.0.0.9") == "too many connections from 10.0.0.9 not logged in yet"
    assert a.admit("10.0.0.8") is None  # the rest of the total is everyone else's
    a.authenticated("10.0.0.9")  # a logged-in connection no longer counts as pending
    assert a.admit("10.0.0.9") is None
    a.closed("10.0.0.9", False)  # one that never logged in leaves
    assert a.admit("10.0.0.9") is None
    a.closed("10.0.0.9", False, logged_in=True)  # the logged-in one leaves: still at the cap
    assert a.admit("10.0.0.9") == "too many connections from 10.0.0.9 not logged in yet"


def _pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    return client, server


def test_only_handshakes_that_stopped_progressing_are_evicted(monkeypatch):
    """Real sockets: progress is what the kernel saw (TCP_INFO), not the slot's age."""
    monkeypatch.setattr(limits, "EVICT_AFTER", 0.2)
    monkeypatch.setattr(limits, "STALL_AFTER", 0.4)
    listener = socket.create_server(("127.0.0.1", 0))
    pairs = [_pair(listener) for _ in range(4)]
    try:
        (c_silent, s_silent), (c_slow_server, s_slow_server), (c_owes, s_owes), \
            (c_new, s_new) = pairs
        a = limits.Admission(100, 3, 3, 10)
        for _c, s in pairs[:3]:
            assert a.admit("10.0.0.1") is None and a.start_auth("10.0.0.1", 0, s) is None
        time.sleep(0.05)
        c_slow_server.sendall(b"SSH-2.0-client\r\n")  # spoke; the server has not answered
        c_owes.sendall(b"SSH-2.0-client\r\n")
        s_owes.recv(100)
        time.sleep(0.05)
        s_owes.sendall(b"SSH-2.0-server\r\n")  # we answered: the client owes us now
        time.sleep(0.3)
        # the silent one goes first (it never sent a byte); the two that spoke are fresh
        c_new.sendall(b"SSH-2.0-newcomer\r\n")
        assert a.admit("10.0.0.2") is None and a.start_auth("10.0.0.2", 0.1, s_new) is None
        assert a.evictions == 1 and _closed(c_silent)
        # everyone silent for STALL_AFTER: only the one we already answered is stalled
        time.sleep(0.5)
        h = Handle()
        assert a.admit("10.0.0.3") is None and a.start_auth("10.0.0.3", 0.1, h) is None
        assert a.evictions == 2 and _closed(c_owes) and not _closed(c_slow_server)
        # a loaded server's slow answer is not the client's fault: never a victim
        assert not limits._stalled(s_slow_server, 10.0) and limits._stalled(s_owes, 10.0)
    finally:
        listener.close()
        for c, s in pairs:
            c.close()
            s.close()


def _closed(client: socket.socket) -> bool:
    client.settimeout(1.0)
    try:
        while True:
            data = client.recv(4096)
            if not data:
                return True
    except socket.timeout:
        return False
    except OSError:
        return True
