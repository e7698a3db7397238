"""CPU seconds and peak RSS of a server's whole process tree, read from /proc.

A server's work is spread over processes that come and go (sshd forks per connection, git
upload-pack runs pack-objects, gitserve may run pack generation in children). CPU time of a
live process is its own utime+stime; a process that exited and was reaped shows up in its
reaper's cutime+cstime. So the sum of (utime+stime+cutime+cstime) over the live tree counts
every process exactly once, and its difference across an operation is the server CPU it cost.
Peak RSS is sampled (sum of VmRSS over the tree) by a thread while the operation runs.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            except OSError:
                continue
            out.extend(int(x) for x in text.split())
    except OSError:
        pass
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class ProcessTree:
    """The processes under ROOT, minus helper daemons matching EXCLUDE (e.g. redis, workers)."""

    def __init__(self, root: int, exclude: str | None = None) -> None:
        self.root = root
        self.exclude = re.compile(exclude) if exclude else None
        self._excluded: dict[int, bool] = {}

    def pids(self) -> list[int]:
        seen: list[int] = []
        todo = [self.root]
        while todo:
            pid = todo.pop()
            if pid != self.root and self.exclude is not None:
                skip = self._excluded.get(pid)
                if skip is None:
                    skip = bool(self.exclude.search(_cmdline(pid)))
                    self._excluded[pid] = skip
                if skip:
                    continue
            seen.append(pid)
            todo.extend(_children(pid))
        return seen

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            # fields[11..14] = utime stime cutime cstime (proc(5) fields 14-17)
            total += sum(int(x) for x in fields[11:15])
        return total / TICK

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            except (OSError, IndexError, ValueError):
                continue
        return total


class Meter:
    """Context manager: server CPU seconds and peak tree RSS over the block."""

    def __init__(self, tree: ProcessTree, interval: float = 0.05) -> None:
        self.tree = tree
        self.interval = interval
        self.cpu = 0.0
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.tree.rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> "Meter":
        self._cpu0 = self.tree.cpu_seconds()
        self.peak_rss = self.tree.rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self.tree.rss_bytes())
        self.cpu = self.tree.cpu_seconds() - self._cpu0
