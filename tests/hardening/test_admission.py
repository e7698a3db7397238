"""The admission rules under a flood, without sockets: eviction of stalled handshakes keeps the
counters exact, and a fresh handshake is never evicted."""

from __future__ import annotations

import threading

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
