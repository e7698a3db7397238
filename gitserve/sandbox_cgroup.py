"""A run's process count in a pids cgroup, where this worker may make one (SPEC §6).

RLIMIT_NPROC stops a fork bomb but says nothing when it does: a bomb that collapses by
itself between two samples of the process tree ends "passed". A pids cgroup counts every
refused fork (`pids.events: max N`), so the limit that ended a run is known exactly.

Used where the worker can create a child cgroup with the pids controller: cgroup v1's
`pids` hierarchy (a root worker on a v1 or hybrid host), or a cgroup v2 directory of its own
with `pids` in its `cgroup.subtree_control` (a delegated subtree). The sandbox's bwrap joins
it before it execs (Popen's preexec writes `0` to cgroup.procs), so nothing of the run is
ever outside it. Elsewhere the rlimit and the tree sampler carry the limit alone.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, super options) of every cgroup mount."""
    found: list[tuple[str, str, str]] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) > 4 and len(rest) > 2 and rest[0] in ("cgroup", "cgroup2"):
            found.append((fields[4], rest[0], rest[2]))
    return found


def _own(hierarchy: str) -> str | None:
    """This process's path in a v1 hierarchy naming HIERARCHY ('' for v2)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if (hierarchy and hierarchy in controllers.split(",")) or (not hierarchy and _id == "0"):
            return path
    return None


def parent() -> Path | None:
    """Where this worker may create a run's pids cgroup, or None."""
    for mount, kind, opts in _mounts():
        if kind == "cgroup" and "pids" in opts.split(","):
            own = _own("pids")
            base = Path(mount) / (own or "/").lstrip("/")
        elif kind == "cgroup2":
            own = _own("")
            base = Path(mount) / (own or "/").lstrip("/")
            try:
                if "pids" not in (base / "cgroup.subtree_control").read_text().split():
                    continue
            except OSError:
                continue
        else:
            continue
        if (base / "cgroup.procs").exists() and os.access(base, os.W_OK):
            return base
    return None


class PidsCgroup:
    """One run's pids cgroup: made with its limit, joined by bwrap, read, removed."""

    def __init__(self, base: Path, limit: int) -> None:
        self.path = base / f"gitserve-{secrets.token_hex(8)}"
        self.path.mkdir()
        (self.path / "pids.max").write_text(f"{limit}\n")
        self.procs_fd = os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def join(self) -> None:
        """In the forked child, before exec: move it (and so all it starts) in."""
        os.write(self.procs_fd, b"0")

    def refused_forks(self) -> int:
        try:
            for line in (self.path / "pids.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "max":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self) -> None:
        try:
            os.close(self.procs_fd)
        except OSError:
            pass
        try:
            self.path.rmdir()
        except OSError:
            pass


def make(limit: int) -> PidsCgroup | None:
    base = parent()
    if base is None:
        return None
    try:
        return PidsCgroup(base, limit)
    except OSError:
        return None
