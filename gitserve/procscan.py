"""The one reader of /proc: which processes exist, their parents, groups and states.

Process supervision needs the same few facts in several places (is a build's process group
empty, which workers belong to an nginx master, did a supervised process die, which
processes did a killed server leave behind); this leaf module is the only code that parses
/proc/PID/stat, so its quirks are handled once: the command name may hold spaces and ')'
(fields are read after the LAST ')'), a process may vanish between listing and reading
(skipped), and a zombie is dead (it only waits to be reaped), so it never counts as alive.
Imports nothing of ours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str          # R S D Z T ... (man 5 proc)
    starttime: int      # clock ticks after boot: with the pid, names one process for good

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")


def _parse(pid: int, text: str) -> Proc | None:
    fields = text[text.rfind(")") + 2:].split()
    if len(fields) < 20:
        return None
    return Proc(pid=pid, state=fields[0], ppid=int(fields[1]), pgid=int(fields[2]),
                sid=int(fields[3]), starttime=int(fields[19]))


def read(pid: int) -> Proc | None:
    """PID's stat, or None when there is no such process (any more)."""
    try:
        return _parse(pid, (PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError):
        return None


def processes() -> Iterator[Proc]:
    """Every process visible here (those that vanish while listing are skipped)."""
    try:
        names = os.listdir(PROC)
    except OSError:
        return
    for name in names:
        if name.isdigit():
            found = read(int(name))
            if found is not None:
                yield found


def cmdline(pid: int) -> bytes:
    """PID's command line (NUL-separated, as the kernel keeps it); b"" when gone."""
    try:
        return (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int, starttime: int | None = None) -> bool:
    """PID exists and is not a zombie; with STARTTIME, it is still that same process
    (a recycled pid is not)."""
    found = read(pid)
    if found is None or found.zombie:
        return False
    return starttime is None or found.starttime == starttime


def is_zombie(pid: int) -> bool:
    found = read(pid)
    return found is not None and found.zombie


def children(pid: int) -> list[int]:
    return [p.pid for p in processes() if p.ppid == pid]


def tree(root: int) -> list[int]:
    """ROOT and all its descendants (one /proc pass), ROOT first."""
    kids: dict[int, list[int]] = {}
    for p in processes():
        kids.setdefault(p.ppid, []).append(p.pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def group_alive(pgid: int) -> bool:
    """Is any process of the group still running? Zombies do not count: they are dead, and
    in a container without a reaping init they would otherwise never go away."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if not PROC.is_dir():
        return True
    return any(p.pgid == pgid and not p.zombie for p in processes())
