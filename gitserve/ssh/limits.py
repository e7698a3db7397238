"""Connection admission: total, unauthenticated (total and per IP), and auth-failure rate.

A Git server on the internet is scanned and brute-forced all day; these limits keep
unauthenticated peers from tying up threads, and one noisy address from locking out the rest.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


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

    def admit(self, ip: str) -> str | None:
        """Count a new connection in, or return why it is refused (at accept time)."""
        with self._lock:
            if self.connections >= self.max_connections:
                return "too many connections"
            if self._recent_failures(ip) >= self.failures_per_minute:
                return f"too many failed logins from {ip}"
            self.connections += 1
            return None

    def start_auth(self, ip: str, wait: float) -> str | None:
        """Take an unauthenticated slot, waiting up to WAIT seconds for one.

        A burst (a CI job starting 20 clones at once) queues briefly instead of being
        dropped: a login takes milliseconds, so slots free up fast. A peer that holds its
        slots open without logging in still only ever gets max_unauth_per_ip of them."""
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                if self.unauth < self.max_unauth and \
                        self._unauth_by_ip[ip] < self.max_unauth_per_ip:
                    self.unauth += 1
                    self._unauth_by_ip[ip] += 1
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    if self._unauth_by_ip.get(ip, 0) == 0:
                        self._unauth_by_ip.pop(ip, None)
                    if self.unauth >= self.max_unauth:
                        return "too many unauthenticated connections"
                    return f"too many unauthenticated connections from {ip}"
                self._cond.wait(left)

    def authenticated(self, ip: str) -> None:
        with self._lock:
            self._drop_unauth(ip)

    def closed(self, ip: str, held_unauth_slot: bool) -> None:
        with self._lock:
            self.connections -= 1
            if held_unauth_slot:
                self._drop_unauth(ip)

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
