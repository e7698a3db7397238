"""Log lines about one peer, rate-limited: a flood must not become a flood of log lines.

A refused connection is worth a line; 160,000 of them in a few minutes (a 300-connection
flood retrying, the stampede bench) fill the disk that holds the repositories, rotate every
useful line out of HOME/logs and cost the accept loop a write each. `PeerLog` writes the first
BURST lines per peer and WINDOW, counts the rest, and writes one summary line per peer when
the window ends:

    refused connection from 10.0.0.7: too many connections from this address
    ... (4 more)
    refused 12873 more connections from 10.0.0.7 in the last 60s (last: too many ...)

At most MAX_PEERS addresses are tracked at once; beyond that the rest share one bucket
("other addresses"), so a flood from many addresses keeps memory bounded too. Summaries are
written by one timer thread, armed only while something is being suppressed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

BURST = 5
WINDOW = 60.0
MAX_PEERS = 4096
OTHERS = "other addresses"


@dataclass
class _Window:
    started: float
    written: int = 0
    suppressed: int = 0
    last: str = ""


class PeerLog:
    """`warning(peer, what, reason)`: 'WHAT from PEER: REASON' at most BURST times per
    WINDOW seconds for each PEER, then one summary line for the rest."""

    def __init__(self, logger: logging.Logger, burst: int = BURST, window: float = WINDOW,
                 max_peers: int = MAX_PEERS, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.burst, self.window = logger, burst, window
        self.max_peers, self.clock = max_peers, clock
        self._lock = threading.Lock()
        self._peers: dict[str, _Window] = {}
        self._timer: threading.Timer | None = None
        self._what = ""

    def warning(self, peer: str, what: str, reason: str) -> None:
        now = self.clock()
        with self._lock:
            self._what = what
            due = self._expired(now)
            key = peer if peer in self._peers or len(self._peers) < self.max_peers else OTHERS
            win = self._peers.get(key)
            if win is None:
                win = self._peers[key] = _Window(now)
            write = win.written < self.burst
            if write:
                win.written += 1
            else:
                win.suppressed += 1
                win.last = reason
                self._arm(now)
        for line in due:
            self.logger.warning("%s", line)
        if write:
            self.logger.warning("%s from %s: %s", what, peer, reason)

    def flush(self) -> None:
        """Write the summaries of every window that has ended (the timer's job)."""
        with self._lock:
            self._timer = None
            due = self._expired(self.clock())
            if any(w.suppressed for w in self._peers.values()):
                self._arm(self.clock())
        for line in due:
            self.logger.warning("%s", line)

    def _expired(self, now: float) -> list[str]:
        """Summary lines of the windows that ended; those windows are dropped."""
        lines: list[str] = []
        for key, win in list(self._peers.items()):
            if now - win.started < self.window:
                continue
            del self._peers[key]
            if win.suppressed:
                where = "from " + key if key != OTHERS else "from other addresses"
                lines.append(f"{self._what.replace('connection', 'connections', 1)} "
                             f"{where}: {win.suppressed} more in the last "
                             f"{self.window:.0f}s, not logged one by one (last: {win.last})")
        return lines

    def _arm(self, now: float) -> None:
        if self._timer is not None:
            return
        first = min((w.started for w in self._peers.values() if w.suppressed), default=now)
        delay = max(0.05, first + self.window - now)
        self._timer = threading.Timer(delay, self.flush)
        self._timer.daemon = True
        self._timer.start()

    def close(self) -> None:
        """Cancel the timer and write what is pending (the server stops)."""
        with self._lock:
            timer, self._timer = self._timer, None
            for win in self._peers.values():
                win.started = -self.window  # every window ends now
            due = self._expired(self.clock())
        if timer is not None:
            timer.cancel()
        for line in due:
            self.logger.warning("%s", line)
