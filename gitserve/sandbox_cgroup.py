"""A run's process count and memory in cgroups, where this worker may make them (SPEC §6).

RLIMIT_NPROC stops a fork bomb but says nothing when it does: a bomb that collapses by
itself between two samples of the process tree ends "passed". A pids cgroup counts every
refused fork (`pids.events: max N`), so the limit that ended a run is known exactly.

RLIMIT_DATA bounds each process's address space, not what the run holds: one allocation over
it fails inside the script (a Python MemoryError, "Cannot allocate memory") and the run ends
"failed" with no word about the limit. A memory cgroup charges every page the run touches
(tmpfs and /dev/shm pages included) and its OOM kills are counted (`oom_kill N`), so with
one the rlimit is left off and a run that hit the ceiling is reported as the memory limit,
however it allocated.

The memory ceiling is `memory + disk`: the run's workspace is a tmpfs of `disk` bytes whose
pages are charged to whoever writes them, so a full workspace must not look like a memory
kill. The exact `memory` limit on resident memory stays the runner's sampler's
(gitserve.sandbox_limits.tree_usage); the cgroup is the ceiling nothing gets past between
two samples. Swap is refused where the kernel accounts it (v1 memsw, v2 swap.max).

Used where the worker can create child cgroups: cgroup v1's `pids` and `memory`
hierarchies (a root worker on a v1 or hybrid host), or a cgroup v2 directory of its own
with the controllers in its `cgroup.subtree_control` (a delegated subtree). The sandbox's
bwrap joins them before it execs (Popen's preexec writes `0` to each cgroup.procs), so
nothing of the run is ever outside them. Elsewhere the rlimits and the tree sampler carry
the limits alone.
"""

from __future__ import annotations

import os
import secrets
import time
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


def parent(controller: str = "pids") -> tuple[Path, bool] | None:
    """Where this worker may create a run's cgroup for CONTROLLER (`pids`, `memory`), and
    whether it is a v2 directory; None when it may not."""
    for mount, kind, opts in _mounts():
        if kind == "cgroup" and controller in opts.split(","):
            own = _own(controller)
            base = Path(mount) / (own or "/").lstrip("/")
        elif kind == "cgroup2":
            own = _own("")
            base = Path(mount) / (own or "/").lstrip("/")
            try:
                if controller not in (base / "cgroup.subtree_control").read_text().split():
                    continue
            except OSError:
                continue
        else:
            continue
        if (base / "cgroup.procs").exists() and os.access(base, os.W_OK):
            return base, kind == "cgroup2"
    return None


def _write(path: Path, value: int | str) -> bool:
    try:
        path.write_text(f"{value}\n")
        return True
    except OSError:
        return False


def _counter(path: Path, key: str) -> int:
    """The value of KEY in a `key value` file (pids.events, memory.events, oom_control)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


class RunCgroups:
    """One run's cgroups: made with their limits, joined by bwrap, read, removed. `memory`
    is False where no memory cgroup could be made (the rlimit then holds memory)."""

    def __init__(self, pids_limit: int, memory_ceiling: int) -> None:
        self.dirs: list[Path] = []
        self.pids_dir: Path | None = None
        self.memory_dir: Path | None = None
        self._v2_memory = False
        self._fds: list[int] = []
        name = f"gitserve-{secrets.token_hex(8)}"
        pids = parent("pids")
        if pids is not None:
            self.pids_dir = self._make(pids[0] / name)
            if self.pids_dir is not None and not _write(self.pids_dir / "pids.max", pids_limit):
                self.pids_dir = None
        mem = parent("memory")
        if mem is not None:
            base, v2 = mem
            path = base / name
            made = path if path in self.dirs else self._make(path)
            if made is not None and self._limit_memory(made, v2, memory_ceiling):
                self.memory_dir, self._v2_memory = made, v2
        try:
            for d in self.dirs:
                self._fds.append(os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            self.remove()
            raise

    def _make(self, path: Path) -> Path | None:
        try:
            path.mkdir()
        except OSError:
            return None
        self.dirs.append(path)
        return path

    @staticmethod
    def _limit_memory(path: Path, v2: bool, ceiling: int) -> bool:
        if v2:
            if not _write(path / "memory.max", ceiling):
                return False
            _write(path / "memory.swap.max", 0)
            return True
        if not _write(path / "memory.limit_in_bytes", ceiling):
            return False
        # memsw (memory + swap) only exists with swap accounting; it must be >= the limit
        if (path / "memory.memsw.limit_in_bytes").exists():
            _write(path / "memory.memsw.limit_in_bytes", ceiling)
        _write(path / "memory.swappiness", 0)
        return True

    @property
    def memory(self) -> bool:
        return self.memory_dir is not None

    def join(self) -> None:
        """In the forked child, before exec: move it (and so all it starts) in."""
        for fd in self._fds:
            os.write(fd, b"0")

    def refused_forks(self) -> int:
        return _counter(self.pids_dir / "pids.events", "max") if self.pids_dir else 0

    def oom_kills(self) -> int:
        """Processes the kernel killed at the memory ceiling."""
        if self.memory_dir is None:
            return 0
        if self._v2_memory:
            return _counter(self.memory_dir / "memory.events", "oom_kill")
        return _counter(self.memory_dir / "memory.oom_control", "oom_kill")

    def peak(self) -> int:
        """The most memory the run was charged at once (0 where unknown)."""
        if self.memory_dir is None:
            return 0
        name = "memory.peak" if self._v2_memory else "memory.max_usage_in_bytes"
        try:
            return int((self.memory_dir / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def remove(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        for d in self.dirs:
            try:
                d.rmdir()
            except OSError:
                pass
        self.dirs = []


STALE_AFTER = 600.0  # an empty run cgroup this old was left by a worker that was killed
_swept: dict[Path, float] = {}


def sweep(base: Path, now: float | None = None) -> int:
    """Remove BASE's empty `gitserve-*` cgroups older than STALE_AFTER: a worker or `gitserve
    sites` killed with -9 never removes its runs' cgroups. rmdir only succeeds on a cgroup
    without processes, and the age keeps a run being set up (made, not joined yet) safe."""
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list(base.glob("gitserve-*"))
    except OSError:
        return 0
    for d in entries:
        try:
            if now - d.stat().st_mtime > STALE_AFTER:
                d.rmdir()
                removed += 1
        except OSError:  # busy (a live run) or gone
            continue
    return removed


def _sweep_now() -> None:
    """Sweep each hierarchy at most once a minute per process."""
    for controller in ("pids", "memory"):
        found = parent(controller)
        if found is None:
            continue
        now = time.time()
        if now - _swept.get(found[0], 0.0) > 60:
            _swept[found[0]] = now
            sweep(found[0], now)


def make(pids_limit: int, memory_ceiling: int) -> RunCgroups | None:
    """The run's cgroups, or None where this worker can make none."""
    _sweep_now()
    try:
        groups = RunCgroups(pids_limit, memory_ceiling)
    except OSError:
        return None
    if not groups.dirs:
        return None
    return groups
