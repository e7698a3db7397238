"""Connection caps of the HTTP face, below the ASGI app (issue 21, finding 6).

uvicorn closes an idle kept-alive connection but gives a client that never finishes its
request headers all the time it wants, and counts connections only in total
(`limit_concurrency`): 210 connections trickling their headers made every request 503 for
80 s. This h11 protocol adds, per connection:

- a header deadline: `[http] header_timeout` seconds from connecting (or from the previous
  response) to a complete set of request headers, else the connection is closed;
- a per-address cap: at most `[http] max_connections_per_ip` open connections from one client
  address; one more is answered 503 and closed before anything is read.

The client address is the TCP peer (a TLS proxy in front is one address: raise the cap or
list it in `[http] trusted_proxies` to exempt it).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        b"Content-Length: 41\r\n\r\ntoo many connections from your address\r\n\r\n")


class PerAddress:
    """Open connections per client address (shared by every connection of one server)."""

    def __init__(self, limit: int, exempt: frozenset[str] = frozenset()) -> None:
        self.limit, self.exempt = limit, exempt
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def admit(self, ip: str) -> bool:
        with self._lock:
            if self.limit and ip not in self.exempt and self._open[ip] >= self.limit:
                return False
            self._open[ip] += 1
            return True

    def release(self, ip: str) -> None:
        with self._lock:
            self._open[ip] -= 1
            if self._open[ip] <= 0:
                del self._open[ip]


def protocol(header_timeout: float, per_address: PerAddress) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the header deadline and the per-address cap."""

    class CappedH11Protocol(H11Protocol):
        _ip: str | None = None
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            ip = self.client[0] if self.client else "?"
            if not per_address.admit(ip):
                transport.write(BUSY)
                transport.close()
                return
            self._ip = ip
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._ip is not None:
                per_address.release(self._ip)
                self._ip = None
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # the request's headers are in
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()  # the next request's headers get their own deadline

        def _arm(self) -> None:
            self._disarm()
            if header_timeout > 0:
                self._header_timer = self.loop.call_later(header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return CappedH11Protocol
