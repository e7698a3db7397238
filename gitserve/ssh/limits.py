"""Connection admission: total, per-address, unauthenticated (total and per IP), auth failures.

A Git server on the internet is scanned and brute-forced all day; these limits keep
unauthenticated peers from tying up threads, and one noisy address from locking out the rest.
But a CI runner behind one NAT address starting 50 clones on a busy machine is not an attack,
and a handshake that is slow because the machine is loaded is not a stalled one (#19):

- one address may hold at most max_pending_per_ip connections that have not logged in yet
  (handshaking or queued for a handshake slot): a flood from one address is refused at
  accept and leaves the total (max_connections) to everyone else;
- when every unauthenticated slot is taken, a newcomer that has sent its SSH banner evicts
  the oldest handshake that has not progressed (from its own address first if that address
  is at its limit): one that never sent a byte for EVICT_AFTER seconds (a real client sends
  its banner at once), or one that has been silent for STALL_AFTER seconds although the
  server answered its last message. A handshake still receiving bytes, or waiting for the
  server (a loaded machine), is never evicted. Progress is read from the kernel (TCP_INFO:
  bytes received, ms since the last data each way); without it, the slot's age is used.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import defaultdict, deque
from typing import Any

EVICT_AFTER = 1.0  # seconds a connection that never sent a byte may hold a wanted slot
STALL_AFTER = 10.0  # seconds a client that did speak may stay silent while we wait on it
_TCP_INFO_LEN = 136  # up to tcpi_bytes_received (Linux >= 4.1)


class Admission:
    def __init__(self, max_connections: int, max_unauth: int, max_unauth_per_ip: int,
                 auth_failures_per_minute: int, max_pending_per_ip: int = 0) -> None:
        self.max_connections = max_connections
        self.max_unauth = max_unauth
        self.max_unauth_per_ip = max_unauth_per_ip
        self.failures_per_minute = auth_failures_per_minute
        # 0: no per-address cap on connections not logged in yet (beyond max_connections)
        self.max_pending_per_ip = max_pending_per_ip
        self._pending_by_ip: dict[str, int] = defaultdict(int)
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
            if self.max_pending_per_ip and self._pending_by_ip[ip] >= self.max_pending_per_ip:
                if not self._pending_by_ip[ip]:
                    del self._pending_by_ip[ip]
                return f"too many connections from {ip} not logged in yet"
            self.connections += 1
            self._pending_by_ip[ip] += 1
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
            self._drop_pending(ip)

    def closed(self, ip: str, held_unauth_slot: bool, handle: Any = None,
               logged_in: bool = False) -> None:
        """A connection admitted by admit() ended; LOGGED_IN: authenticated() was called."""
        with self._lock:
            self.connections -= 1
            if held_unauth_slot:
                self._release(ip, handle)
            if not logged_in:
                self._drop_pending(ip)
            self._evicted.discard(handle)

    def _drop_pending(self, ip: str) -> None:
        if self._pending_by_ip.get(ip, 0) > 0:
            self._pending_by_ip[ip] -= 1
        if self._pending_by_ip.get(ip, 1) <= 0:
            del self._pending_by_ip[ip]

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
                   if (vip == ip or not same_ip) and _stalled(h, now - since)]
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


def _tcp_progress(handle: Any) -> tuple[int, float, float] | None:
    """(bytes received, seconds since the last data received, since the last data sent) of
    the socket HANDLE, from the kernel; None where TCP_INFO is not available."""
    getsockopt = getattr(handle, "getsockopt", None)
    if getsockopt is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        raw = getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return None
    if len(raw) < _TCP_INFO_LEN:
        return None
    last_sent, _ack_sent, last_recv = struct.unpack_from("=III", raw, 44)
    (received,) = struct.unpack_from("=Q", raw, 128)
    return received, last_recv / 1000.0, last_sent / 1000.0


def _stalled(handle: Any, held: float) -> bool:
    """Has the client on HANDLE stopped progressing? HELD: seconds it has had its slot."""
    progress = _tcp_progress(handle)
    if progress is None:
        return held >= EVICT_AFTER
    received, since_recv, since_sent = progress
    if received == 0:  # never spoke: not a real client (it sends its banner at once)
        return held >= EVICT_AFTER
    if since_recv < STALL_AFTER:
        return False  # still sending
    # silent that long: stalled only if we answered its last bytes (it owes us), not when the
    # server itself is slow to answer on a loaded machine
    return since_sent <= since_recv


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
