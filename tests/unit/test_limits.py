"""Admission control for SSH connections."""

from __future__ import annotations

import threading
import time

from gitserve.ssh.limits import Admission


def test_total_connection_cap_and_release():
    a = Admission(max_connections=2, max_unauth=10, max_unauth_per_ip=10, auth_failures_per_minute=5)
    assert a.admit("1.1.1.1") is None
    assert a.admit("2.2.2.2") is None
    assert a.admit("3.3.3.3") == "too many connections"
    a.closed("1.1.1.1", held_unauth_slot=False)
    assert a.admit("3.3.3.3") is None


def test_unauth_per_ip_waits_then_refuses_and_frees_on_login():
    a = Admission(max_connections=100, max_unauth=100, max_unauth_per_ip=2, auth_failures_per_minute=5)
    assert a.start_auth("ip", 0) is None
    assert a.start_auth("ip", 0) is None
    t0 = time.monotonic()
    assert "from ip" in a.start_auth("ip", 0.2)
    assert time.monotonic() - t0 >= 0.19
    assert a.start_auth("other", 0) is None  # other addresses are not affected

    def login_soon() -> None:
        time.sleep(0.1)
        a.authenticated("ip")

    threading.Thread(target=login_soon).start()
    assert a.start_auth("ip", 2) is None  # a burst queues until a slot frees


def test_auth_failures_rate_limit_an_address():
    a = Admission(max_connections=100, max_unauth=100, max_unauth_per_ip=10, auth_failures_per_minute=3)
    for _ in range(3):
        a.auth_failure("bad")
    assert a.admit("bad") == "too many failed logins from bad"
    assert a.admit("good") is None
