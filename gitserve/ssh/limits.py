"""Connection admission: total, unauthenticated (total and per IP), and auth-failure rate.

A Git server on the internet is scanned and brute-forced all day; these limits keep
unauthenticated peers from tying up threads, and one noisy address from locking out the rest.

When every unauthenticated slot is taken, a newcomer that has sent its SSH banner evicts
the oldest handshake that has been pending for EVICT_AFTER seconds (from its own address first if that address is at its
limit): a login takes milliseconds, so a slot held that long is a stalled or hostile client,
and a flood of silent connections cannot lock real users out for a whole banner timeout.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from typing import Any

EVICT_AFTER = 1.0  # seconds an unauthenticated connection may hold a wanted slot


class Admission:
    def __init__(self, max_connections: int, max_unauth: int, max_unauth_per_ip: int,
                 auth_failures_per_minute: int) -> None:
        self.max_connections = max_connections
        self.max_unauth = max_unauth
        self.max_unauth_per_ip = max_unauth_per_ip
        self.failures_per_minute = auth_failures_per_minute
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.connections = 0
        self.unauth = 0
        self._unauth_by_ip: dict[str, int] = defaultdict(int)
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        # handle (the accepted socket) -> (ip, since) of connections holding a slot
        self._pending: dict[Any, tuple[str, float]] = {}
        self._evicted: set[Any] = set()
        self.evictions = 0

    def admit(self, ip: str) -> str | None:
        """Count a new connection in, or return why it is refused (at accept time)."""
        with self._lock:
            if self.connections >= self.max_connections:
                return "too many connections"
            if self._recent_failures(ip) >= self.failures_per_minute:
                return f"too many failed logins from {ip}"
            self.connections += 1
            return None

    def start_auth(self, ip: str, wait: float, handle: Any = None) -> str | None:
        """Take an unauthenticated slot, waiting up to WAIT seconds for one.

        A burst (a CI job starting 20 clones at once) queues briefly instead of being
        dropped: a login takes milliseconds, so slots free up fast. A peer that holds its
        slots open without logging in still only ever gets max_unauth_per_ip of them."""
        arrived = time.monotonic()
        deadline = arrived + wait
        with self._cond:
            while True:
                if self.unauth < self.max_unauth and \
                        self._unauth_by_ip[ip] < self.max_unauth_per_ip:
                    self.unauth += 1
                    self._unauth_by_ip[ip] += 1
                    if handle is not None:
                        self._pending[handle] = (ip, time.monotonic())
                    return None
                # only a peer that has spoken (a real client sends its SSH banner at once) may
                # evict: silent connections queued by a flood wait, they never push anyone out
                spoken = _has_spoken(handle)
                if spoken and self._evict_stalled(ip):
                    continue
                if not spoken and time.monotonic() - arrived >= EVICT_AFTER:
                    # silent in the queue: not a real client, don't let it hold a connection
                    if self._unauth_by_ip.get(ip, 0) == 0:
                        self._unauth_by_ip.pop(ip, None)
                    return "too many unauthenticated connections (and this one is silent)"
                left = deadline - time.monotonic()
                if left <= 0:
                    if self._unauth_by_ip.get(ip, 0) == 0:
                        self._unauth_by_ip.pop(ip, None)
                    if self.unauth >= self.max_unauth:
                        return "too many unauthenticated connections"
                    return f"too many unauthenticated connections from {ip}"
                self._cond.wait(min(left, 0.1))  # re-check: has the peer spoken yet?

    def authenticated(self, ip: str, handle: Any = None) -> None:
        with self._lock:
            self._release(ip, handle)

    def closed(self, ip: str, held_unauth_slot: bool, handle: Any = None) -> None:
        with self._lock:
            self.connections -= 1
            if held_unauth_slot:
                self._release(ip, handle)
            self._evicted.discard(handle)

    def _release(self, ip: str, handle: Any) -> None:
        if handle is not None and handle in self._evicted:
            return  # its slot was already given to someone else
        self._pending.pop(handle, None)
        self._drop_unauth(ip)

    def _evict_stalled(self, ip: str) -> bool:
        """Free a slot by closing the oldest stalled handshake (lock held)."""
        now = time.monotonic()
        same_ip = self._unauth_by_ip.get(ip, 0) >= self.max_unauth_per_ip
        victims = [(since, h, vip) for h, (vip, since) in self._pending.items()
                   if now - since >= EVICT_AFTER and (vip == ip or not same_ip)]
        if not victims:
            return False
        _since, handle, vip = min(victims, key=lambda v: v[0])
        del self._pending[handle]
        self._evicted.add(handle)
        self._drop_unauth(vip)
        self.evictions += 1
        try:
            import socket

            handle.shutdown(socket.SHUT_RDWR)  # its thread sees EOF and cleans up
        except (OSError, AttributeError):
            pass
        return True

    def auth_failure(self, ip: str) -> None:
        with self._lock:
            self._failures[ip].append(time.monotonic())

    def _drop_unauth(self, ip: str) -> None:
        self.unauth -= 1
        self._unauth_by_ip[ip] -= 1
        if self._unauth_by_ip[ip] <= 0:
            del self._unauth_by_ip[ip]
        self._cond.notify_all()

    def _recent_failures(self, ip: str) -> int:
        q = self._failures.get(ip)
        if not q:
            return 0
        cutoff = time.monotonic() - 60
        while q and q[0] < cutoff:
            q.popleft()
        if not q:
            del self._failures[ip]
        return len(q)


def _has_spoken(handle: Any) -> bool:
    """Has the peer on HANDLE (a socket) sent anything yet? Peeks, consumes nothing."""
    import socket

    recv = getattr(handle, "recv", None)
    if recv is None:
        return True  # no socket to look at (tests, embedding): treat as a real client
    try:
        return bool(recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return False
