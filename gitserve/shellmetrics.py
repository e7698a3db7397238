"""Metrics of `gitserve shell` sessions (behind the system OpenSSH), for the server's /metrics.

A forced-command process lives for one connection, so it cannot be scraped. It counts in
memory with `SessionCounts` (the interface of gitserve.metrics.Metrics, without importing
prometheus_client: every sshd connection pays for its imports) and, when the session ends,
appends its counts as one JSON line to HOME/run/shell-metrics.jsonl under an flock. The
running server's /metrics Observer (gitserve/http/metrics.py) reads the lines it has not
seen before each scrape and adds them to its own counters with `transport="sshd"`, then
truncates the file once it has grown (under the same lock, so no line is lost or read twice).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

from gitserve.metrics import NullMetric

log = logging.getLogger(__name__)

SPOOL = "shell-metrics.jsonl"
TRANSPORT = "sshd"  # what the shell's "ssh" counts become on the server
COMPACT_BYTES = 256 * 1024  # the server truncates the file once it has read this much
# the counters a session may add to (gauges and histograms stay the server's own)
COUNTERS = ("connections", "connections_refused", "git_requests", "git_bytes",
            "access_denied", "pushes")


def spool_path(run_dir: Path) -> Path:
    return run_dir / SPOOL


class _Count(NullMetric):
    """A counter of the session; as a gauge or histogram it keeps nothing (a session's open
    connection is over when it reports)."""

    def __init__(self, store: dict[tuple[str, tuple[str, ...]], float],
                 key: tuple[str, tuple[str, ...]]) -> None:
        self._store, self._key = store, key

    def labels(self, *values: str, **_k: Any) -> _Count:
        return _Count(self._store, (self._key[0], tuple(str(v) for v in values)))

    def inc(self, amount: float = 1) -> None:
        self._store[self._key] = self._store.get(self._key, 0) + amount


class SessionCounts:
    """What one shell session counted: {(metric, labels): amount}."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, tuple[str, ...]], float] = {}

        def count(name: str) -> _Count:
            return _Count(self.counts, (name, ()))

        self.connections, self.connections_open = count("connections"), count("connections_open")
        self.connections_refused = count("connections_refused")
        self.git_requests, self.git_bytes = count("git_requests"), count("git_bytes")
        self.access_denied, self.pushes = count("access_denied"), count("pushes")
        self.builds, self.build_seconds = count("builds"), count("build_seconds")
        self.deploys, self.switch_seconds = count("deploys"), count("switch_seconds")
        self.queue_depth = count("queue_depth")

    def record(self) -> list[list[Any]]:
        return [[name, list(labels), value] for (name, labels), value in self.counts.items()
                if name in COUNTERS and value]


def flush(run_dir: Path, counts: SessionCounts) -> None:
    """Append COUNTS as one line; a failure only loses these numbers (logged)."""
    record = counts.record()
    if not record:
        return
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    try:
        fd = os.open(spool_path(run_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("shell metrics not recorded: %s", exc)


class Reader:
    """The server's side: the lines appended since the last read, as (metric, labels, amount)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = spool_path(run_dir)
        self.offset = 0

    def skip_existing(self) -> None:
        """At server start: what earlier sessions counted belongs to earlier servers."""
        try:
            self.offset = self.path.stat().st_size
        except OSError:
            self.offset = 0

    def read_new(self) -> list[tuple[str, tuple[str, ...], float]]:
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return []
        out: list[tuple[str, tuple[str, ...], float]] = []
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size < self.offset:  # truncated by someone else: start over
                self.offset = 0
            os.lseek(fd, self.offset, os.SEEK_SET)
            data = b""
            while len(data) < size - self.offset:
                chunk = os.read(fd, size - self.offset - len(data))
                if not chunk:
                    break
                data += chunk
            self.offset += len(data)
            for line in data.splitlines():
                try:
                    for name, labels, value in json.loads(line):
                        if name in COUNTERS and isinstance(value, (int, float)) and value > 0:
                            out.append((name, tuple(str(x) for x in labels), float(value)))
                except (ValueError, TypeError):
                    continue  # a torn or foreign line: skip it
            if self.offset >= COMPACT_BYTES:
                os.ftruncate(fd, 0)
                self.offset = 0
        finally:
            os.close(fd)
        return out
