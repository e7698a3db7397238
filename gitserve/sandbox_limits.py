"""Resource limits of a sandboxed run (SPEC §6): what one build may use, and how it is held.

`[builds] memory pids cpu_seconds file_size disk open_files log_bytes` are the server's
ceilings; a repo lowers them with `option build.memory = 512M` etc., never raises them
(`Limits.lowered`). How each is enforced without cgroups (the kernel's rlimits are per
process, so the worker also watches the sandbox's whole process tree, `Usage`):

- memory:      the tree's resident memory sampled every TICK: at the limit the run is
               killed; a memory cgroup of `memory + disk` (gitserve.sandbox_cgroup) where
               the worker can make one, whose OOM kills are reported as the memory limit;
               elsewhere RLIMIT_DATA of twice the limit per process, and a run that failed
               on a refused allocation (MemoryError, ENOMEM in its last lines) is reported
               as the memory limit too;
- pids:        RLIMIT_NPROC of twice the limit (counted per uid: per repo when root) and the
               tree's task count: at the limit the run is killed (a fork bomb hits both);
- cpu_seconds: RLIMIT_CPU per process and the tree's CPU time (children reaped included);
- file_size:   RLIMIT_FSIZE (the writer gets SIGXFSZ);
- disk:        the workspace is its own tmpfs of that size (gitserve.sandbox_disk), so a full
               workspace never fills the server's disk; a full workspace ends the run;
- open_files:  RLIMIT_NOFILE;
- log_bytes:   the build log keeps that much output and says where it cut (buildqueue/runner).

Each limit that ends a run says so in one line: `build 42 killed: memory limit 2G reached`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import GitserveError

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
# the per-repo option (build.NAME) of each limit; sizes take K/M/G/T suffixes
SIZES = ("memory", "file_size", "disk", "log_bytes")
COUNTS = ("pids", "cpu_seconds", "open_files")
OPTION_NAMES = {name: "build." + name.replace("_", "-") for name in (*SIZES, *COUNTS)}


class LimitError(GitserveError):
    """A limit value that is not a size or a count (one line)."""


def parse_size(value: Any) -> int:
    """'512M' / '2G' / '2GiB' / 1048576 -> bytes (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise LimitError(f"{value!r} is not a positive size")
        return value
    m = _SIZE_RE.match(str(value))
    if not m or int(m.group(1)) <= 0:
        raise LimitError(f"{value!r} is not a size (a number with K, M, G or T)")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def parse_count(value: Any) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise LimitError(f"{value!r} is not a whole number") from None
    if n <= 0:
        raise LimitError(f"{value!r} is not a positive number")
    return n


def human(size: int) -> str:
    """2147483648 -> '2G' (the largest unit that divides it)."""
    for unit in ("T", "G", "M", "K"):
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


@dataclass(frozen=True)
class Limits:
    memory: int = 2 << 30
    pids: int = 512
    cpu_seconds: int = 3600
    file_size: int = 1 << 30
    disk: int = 4 << 30
    open_files: int = 1024
    log_bytes: int = 16 << 20

    @classmethod
    def from_settings(cls, builds: Any) -> "Limits":
        """[builds] values; a bad one raises LimitError naming the setting."""
        values: dict[str, int] = {}
        for f in fields(cls):
            raw = getattr(builds, f.name, None)
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = parse_size(raw) if f.name in SIZES else parse_count(raw)
            except LimitError as exc:
                raise LimitError(f"[builds] {f.name}: {exc}") from None
        return cls(**values)

    def lowered(self, options: Mapping[str, str]) -> tuple["Limits", list[str]]:
        """These limits with the repo's `option build.memory = 512M` etc. applied: an option
        only ever lowers a limit. Returns the limits and one warning per option ignored."""
        changes: dict[str, int] = {}
        warnings: list[str] = []
        for name, option in OPTION_NAMES.items():
            raw = (options.get(option) or "").strip()
            if not raw:
                continue
            try:
                value = parse_size(raw) if name in SIZES else parse_count(raw)
            except LimitError as exc:
                warnings.append(f"gitserve: option {option}: {exc}; using the server's limit")
                continue
            ceiling = getattr(self, name)
            if value > ceiling:
                warnings.append(f"gitserve: option {option} = {raw} is above the server's "
                                f"{self.show(name)}; using {self.show(name)}")
                continue
            changes[name] = value
        return replace(self, **changes), warnings

    def show(self, name: str) -> str:
        value = getattr(self, name)
        return human(value) if name in SIZES else str(value)

    def to_payload(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_payload(cls, value: Any) -> "Limits":
        if not isinstance(value, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in value.items() if k in known and int(v) > 0})

    def prlimit_argv(self, nproc: int | None = None, data: bool = True) -> list[str]:
        """util-linux prlimit(1) in front of the script: the per-process rlimits. It runs
        after the drop to the build uid (lowering a limit needs no privilege). DATA=False
        where a memory cgroup holds the memory (gitserve.sandbox_cgroup): an allocation
        refused by the rlimit would end the run without saying it hit the limit."""
        procs = nproc or self.pids * 2  # headroom: the tree watcher kills at `pids`
        return ["prlimit", *([f"--data={self.memory * 2}"] if data else []), f"--nproc={procs}",
                f"--cpu={self.cpu_seconds}:{self.cpu_seconds + 5}",
                f"--fsize={self.file_size}", f"--nofile={self.open_files}", "--core=0", "--"]

    def memory_ceiling(self) -> int:
        """A run's memory cgroup limit: `memory` plus its workspace tmpfs (`disk`), whose
        pages are charged to the run (see gitserve.sandbox_cgroup)."""
        return self.memory + self.disk


def killed_line(build_id: str, what: str, limits: Limits) -> str:
    """The one line a limit that ended a run prints."""
    label = what.replace("_", " ")
    return f"build {build_id} killed: {label} limit {limits.show(what)} reached"


# --- watching a sandbox's process tree ---------------------------------------------------
@dataclass
class Usage:
    """What a run's process tree uses right now (sampled from /proc)."""

    tasks: int = 0
    rss: int = 0
    cpu_seconds: float = 0.0


def tree_usage(init_pid: int) -> Usage:
    """Tasks, resident bytes and CPU seconds (reaped children included) of every process in
    INIT_PID's PID namespace (the sandbox's init is pid 1 there and reaps every orphan, so
    the run's whole history is in these processes' own and children's times)."""
    usage = Usage()
    try:
        target = os.readlink(f"/proc/{init_pid}/ns/pid")
    except OSError:
        return usage
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/pid") != target:
                continue
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        # rest[0] is field 3 (state): utime=14 stime=15 cutime=16 cstime=17 threads=20 rss=24
        try:
            ticks = sum(int(rest[i - 3]) for i in (14, 15, 16, 17))
            usage.tasks += int(rest[20 - 3])
            usage.rss += int(rest[24 - 3]) * PAGE
        except (IndexError, ValueError):
            continue
        usage.cpu_seconds += ticks / TICKS
    return usage


def over(usage: Usage, limits: Limits) -> str | None:
    """The limit USAGE reached (memory, pids, cpu_seconds), or None."""
    if usage.rss >= limits.memory:
        return "memory"
    if usage.tasks >= limits.pids:
        return "pids"
    if usage.cpu_seconds >= limits.cpu_seconds:
        return "cpu_seconds"
    return None


# what a process that died of a refused allocation says last: Python, libc's strerror(ENOMEM)
# (shells, coreutils, git), glibc/C++ runtimes, Node, Go, Java
_ALLOCATION_REFUSED = re.compile(
    r"MemoryError|Cannot allocate memory|out of memory|std::bad_alloc|memory exhausted|"
    r"OutOfMemoryError|cannot allocate \d+ bytes", re.IGNORECASE)


def allocation_refused(tail: "list[str]") -> bool:
    """Do a failed run's last lines (TAIL) say an allocation was refused?"""
    return any(_ALLOCATION_REFUSED.search(line) for line in tail)


def disk_full(path: Path, margin: int = 64 << 10) -> bool:
    """Is the workspace filesystem at PATH (its own tmpfs) full?"""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < margin
