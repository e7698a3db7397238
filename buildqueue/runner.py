"""Run one build script: own process group, stdin /dev/null, line-by-line output, timeout.

The script runs in a new session so that a timeout or a cancel can kill everything it
started (grandchildren included) with one killpg; in the sandbox (gitserve.sandbox) it also
runs in its own PID namespace, which is killed and reaped before run_script returns, so not
even a setsid daemon outlives it. Output is read by a thread and handed over line by line,
so a line reaches the log the moment the script prints it; every line the script wrote
reaches ON_LINE (the reader's queue is bounded, so a fast writer waits for the log instead
of filling memory), up to LOG_BYTES, where one line says the output was cut.

With a jail the run's limits are watched (gitserve.sandbox_limits): the process tree's
memory, tasks and CPU time and the workspace's filesystem every MONITOR_INTERVAL; a limit
reached kills the run and RunResult.limit names it.
"""

from __future__ import annotations

import collections
import ctypes
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gitserve import procscan
from gitserve.sandbox import Run

KILL_GRACE = 2.0   # seconds between SIGTERM and SIGKILL
# after the script ended (its namespace killed), how long the pipe may stay silent before a
# stray holder outside any namespace (unsandboxed runs) is given up on; lines already
# written are always delivered, however long that takes
DRAIN_LIMIT = 2.0
MONITOR_INTERVAL = 0.25
HOT_INTERVAL = 0.01  # near a limit (half of pids or memory): sample this often
QUEUE_CHUNKS = 64
READ_SIZE = 65536
MAX_LINE_BYTES = 65536
_PR_SET_PDEATHSIG = 1
TAIL_LINES = 5  # the last lines a failed run is read for a refused allocation


@dataclass
class RunResult:
    status: str  # passed | failed | timed out | cancelled | killed
    exit_code: int | None
    limit: str | None = None  # the limit that ended it (memory, pids, cpu_seconds, disk, ...)
    cut_at: int | None = None  # bytes of output kept when log_bytes cut the rest


_LIBC: ctypes.CDLL | None
try:  # loaded once here: the child between fork and exec must not dlopen (other threads may hold locks)
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """preexec_fn: the child gets SIG when its parent dies (Linux), so nothing outlives its
    supervisor: a script its killed job process, Redis and workers a killed `gitserve serve`."""
    parent = os.getpid()

    def preexec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, sig)
            if os.getppid() != parent:  # the parent died before prctl: no signal would come
                os.kill(os.getpid(), sig)
    return preexec




_forks_die_with_parent = False


def forks_die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Every process this one forks from now on (rq's work horse, rq's scheduler, which
    multiprocessing forks with the worker's own command line) gets SIG when its parent dies.
    A worker killed with -9 (serve's parent-death signal, the OOM killer) would otherwise leave
    its scheduler retrying a dead Redis for the rqconn Retry's ~30 s, and its horse finishing a
    job rq already counts as abandoned. subprocess's fork+exec runs no at-fork hooks: the
    build script's own parent-death signal comes from run_script."""
    global _forks_die_with_parent
    if _forks_die_with_parent or _LIBC is None:
        return
    _forks_die_with_parent = True
    parent = [0]

    def before() -> None:
        parent[0] = os.getpid()

    def after_in_child() -> None:
        assert _LIBC is not None
        _LIBC.prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent[0]:  # the parent died before prctl: no signal would come
            os.kill(os.getpid(), sig)

    os.register_at_fork(before=before, after_in_child=after_in_child)

def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_group(pgid: int, grace: float = KILL_GRACE,
                    leader: subprocess.Popen | None = None) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is still there after GRACE."""
    _killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()  # reap our own child, or its zombie keeps the group "alive"
        if not procscan.group_alive(pgid):
            return
        time.sleep(0.05)
    _killpg(pgid, signal.SIGKILL)


def _feed(proc: subprocess.Popen, data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except OSError:  # the script did not read its stdin: that is its business
        pass


def run_script(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    on_line: Callable[[str], None],
    should_cancel: Callable[[], bool] = lambda: False,
    tick: Callable[[], None] = lambda: None,
    tick_interval: float = 1.0,
    stdin_data: bytes | None = None,
    jail: Run | None = None,
    log_bytes: int | None = None,
    workspace: Path | None = None,
    on_spawn: Callable[[int], None] | None = None,
) -> RunResult:
    """Run ARGV to completion, timeout or cancel; stdin is /dev/null unless STDIN_DATA is given.
    ON_SPAWN gets the script's process group id once it runs (so whoever stops the job can
    still kill what the script started).

    With JAIL (gitserve.sandbox.prepare) its command, environment and directory replace
    ARGV, ENV and CWD, and its PID namespace is gone when this returns. LOG_BYTES caps the
    output handed to ON_LINE (default: the jail's limit; none without a jail); WORKSPACE is
    the run's capped filesystem, watched for the disk limit."""
    kw: dict = {"cwd": cwd, "env": env}
    preexec = die_with_parent(signal.SIGKILL)
    if jail is not None:
        argv, kw = jail.argv, jail.popen_kwargs()
        join = kw.pop("preexec_fn", None)
        if join is not None:  # bwrap joins the run's cgroups before it execs
            dies = preexec

            def preexec() -> None:
                dies()
                join()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=preexec, **kw,
        )
    except BaseException:
        if jail is not None:
            jail.close()
        raise
    if log_bytes is None and jail is not None and jail.limits is not None:
        log_bytes = jail.limits.log_bytes
    try:
        if jail is not None:
            jail.started()
    except BaseException:
        if jail is not None:
            jail.kill()
        _killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if jail is not None:
            jail.reap()
            jail.close()
        raise
    try:
        if on_spawn is not None:
            on_spawn(proc.pid)
        return _supervise(proc, timeout, on_line, should_cancel, tick, tick_interval, stdin_data,
                          jail, log_bytes, workspace)
    finally:
        if jail is not None:
            jail.reap()
            jail.close()


class _Output:
    """Hands lines to ON_LINE until LOG_BYTES, then one line saying where it cut."""

    def __init__(self, on_line: Callable[[str], None], log_bytes: int | None) -> None:
        self.on_line, self.log_bytes = on_line, log_bytes
        self.kept = 0
        self.cut_at: int | None = None
        self.dropped = 0
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def __call__(self, raw: bytes) -> None:
        self.tail.append(raw[:400].decode("utf-8", "replace"))  # kept or cut: it was printed
        if self.cut_at is not None:
            self.dropped += len(raw)
            return
        if self.log_bytes is not None and self.kept + len(raw) > self.log_bytes:
            self.cut_at = self.kept
            self.dropped += len(raw)
            from gitserve.sandbox_limits import human

            self.on_line(f"gitserve: output cut here: log limit {human(self.log_bytes)} reached "
                         f"({self.kept} bytes kept; the build goes on, its output is not kept)")
            return
        self.kept += len(raw)
        self.on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))


def _limit_reached(jail: Run | None, workspace: Path | None) -> tuple[str | None, bool]:
    """(the limit reached or None, whether the run is near one: then it is sampled every
    HOT_INTERVAL, so a fork bomb whose numbers swing around the limit is caught at a peak)."""
    from gitserve import sandbox_limits

    if jail is None or jail.limits is None:
        return None, False
    if workspace is not None and sandbox_limits.disk_full(workspace):
        return "disk", False
    if jail.cgroup is not None and jail.cgroup.refused_forks():
        return "pids", False  # the pids cgroup refused a fork: exact, whatever the samples saw
    if jail.cgroup is not None and jail.cgroup.oom_kills():
        return "memory", False  # the kernel killed a process at the memory cgroup's ceiling
    if jail.init_pid is None:
        return None, False
    usage = sandbox_limits.tree_usage(jail.init_pid)
    lim = jail.limits
    hot = usage.tasks * 2 >= lim.pids or usage.rss * 2 >= lim.memory
    return sandbox_limits.over(usage, lim), hot


def _supervise(proc: subprocess.Popen, timeout: float, on_line: Callable[[str], None],
               should_cancel: Callable[[], bool], tick: Callable[[], None], tick_interval: float,
               stdin_data: bytes | None, jail: Run | None, log_bytes: int | None = None,
               workspace: Path | None = None) -> RunResult:
    pgid = proc.pid
    if stdin_data is not None:
        threading.Thread(target=_feed, args=(proc, stdin_data), daemon=True).start()
    # chunks of lines (read 64 KiB at a time: a script printing a million lines costs a
    # million queue hand-overs otherwise); bounded, so a fast writer waits for the log
    lines: queue.Queue[list[bytes] | None] = queue.Queue(QUEUE_CHUNKS)
    deliver = _Output(on_line, log_bytes)

    def read() -> None:
        out = proc.stdout
        assert out is not None
        fd = out.fileno()
        partial = b""
        while True:
            chunk = os.read(fd, READ_SIZE)
            if not chunk:
                break
            parts = (partial + chunk).split(b"\n")
            partial = parts.pop()
            batch = [p + b"\n" for p in parts]
            while len(partial) >= MAX_LINE_BYTES:  # a line without end is cut in pieces
                batch.append(partial[:MAX_LINE_BYTES])
                partial = partial[MAX_LINE_BYTES:]
            if batch:
                lines.put(batch)
        if partial:
            lines.put([partial])
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    deadline = time.monotonic() + timeout
    next_tick = time.monotonic() + tick_interval
    next_watch = time.monotonic() + MONITOR_INTERVAL
    outcome: str | None = None
    limit: str | None = None
    eof = False

    while proc.poll() is None:
        if eof:  # the script closed its output but runs on
            time.sleep(max(0.005, min(0.1, next_watch - time.monotonic())))
        else:
            try:
                batch = lines.get(timeout=max(0.005, min(0.1, next_watch - time.monotonic())))
                if batch is None:
                    eof = True
                else:
                    for raw in batch:
                        deliver(raw)
            except queue.Empty:
                pass
        now = time.monotonic()
        if now >= next_watch:
            limit, hot = _limit_reached(jail, workspace)
            next_watch = now + (HOT_INTERVAL if hot else MONITOR_INTERVAL)
            if limit is not None:
                outcome = "killed"
        if now >= next_tick:
            tick()
            next_tick = now + tick_interval
            if outcome is None and should_cancel():
                outcome = "cancelled"
        if outcome is None and now >= deadline:
            outcome = "timed out"
        if outcome is not None:
            break
    # the script is done (or must go): whatever it left behind in its group and namespace goes too
    if jail is not None:
        jail.kill()  # the namespace's init: everything in it dies at once
    if outcome is not None:
        terminate_group(pgid, leader=proc)
    _killpg(pgid, signal.SIGKILL)
    code = proc.wait()
    # every line already written is delivered; only a silent pipe held open by a stray
    # process outside the namespace is given up on after DRAIN_LIMIT
    while not eof:
        try:
            batch = lines.get(timeout=DRAIN_LIMIT)
        except queue.Empty:
            break
        if batch is None:
            break
        for raw in batch:
            deliver(raw)
    if limit is None and jail is not None and outcome is None:
        limit = _limit_reached_at_end(jail, workspace, code, list(deliver.tail))
    if outcome is not None:
        return RunResult(outcome, code, limit, deliver.cut_at)
    if limit is not None:
        return RunResult("killed", code, limit, deliver.cut_at)
    return RunResult("passed" if code == 0 else "failed", code, None, deliver.cut_at)


def _limit_reached_at_end(jail: Run, workspace: Path | None, code: int,
                          tail: list[str]) -> str | None:
    """A script that ended on its own may still have been ended by a limit: SIGXCPU /
    SIGXFSZ (its own or a child's, as the shell reports it: 128 + signal), a full disk, an
    OOM kill in its memory cgroup, or a failure whose last lines (TAIL) say an allocation
    was refused (MemoryError, ENOMEM): the rlimit's way of saying it, without a cgroup."""
    from gitserve import sandbox_limits

    if workspace is not None and sandbox_limits.disk_full(workspace):
        return "disk"
    if jail.cgroup is not None and jail.cgroup.refused_forks():
        return "pids"
    if jail.cgroup is not None and jail.cgroup.oom_kills():
        return "memory"
    for sig, what in ((signal.SIGXCPU, "cpu_seconds"), (signal.SIGXFSZ, "file_size")):
        if code in (-sig, 128 + sig):
            return what
    if code != 0 and sandbox_limits.allocation_refused(tail):
        return "memory"  # RLIMIT_DATA (or the machine) refused an allocation: the script died of it
    return None
