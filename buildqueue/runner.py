"""Run one build script: own process group, stdin /dev/null, line-by-line output, timeout.

The script runs in a new session so that a timeout or a cancel can kill everything it
started (grandchildren included) with one killpg; in the sandbox (gitserve.sandbox) it also
runs in its own PID namespace, which is killed and reaped before run_script returns, so not
even a setsid daemon outlives it. Output is read by a thread and handed over line by line,
so a line reaches the log the moment the script prints it.
"""

from __future__ import annotations

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

from gitserve.sandbox import Run

KILL_GRACE = 2.0   # seconds between SIGTERM and SIGKILL
DRAIN_LIMIT = 2.0  # seconds to keep reading after the script ended (stray holders of the pipe)
_PR_SET_PDEATHSIG = 1


@dataclass
class RunResult:
    status: str  # passed | failed | timed out | cancelled
    exit_code: int | None


_LIBC: ctypes.CDLL | None
try:  # loaded once here: the child between fork and exec must not dlopen (other threads may hold locks)
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """preexec_fn: the child gets SIG when its parent dies (Linux), so nothing outlives its
    supervisor: a script its killed job process, Redis and workers a killed `gitserve serve`."""
    def preexec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, sig)
    return preexec


_die_with_parent = die_with_parent(signal.SIGKILL)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Is any process of the group still running? Zombies do not count: they are dead, and
    in a container without a reaping init they would otherwise never go away."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def terminate_group(pgid: int, grace: float = KILL_GRACE,
                    leader: subprocess.Popen | None = None) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is still there after GRACE."""
    _killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()  # reap our own child, or its zombie keeps the group "alive"
        if not _group_alive(pgid):
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
    on_spawn: Callable[[int], None] | None = None,
) -> RunResult:
    """Run ARGV to completion, timeout or cancel; stdin is /dev/null unless STDIN_DATA is given.
    ON_SPAWN gets the script's process group id once it runs (so whoever stops the job can
    still kill what the script started).

    With JAIL (gitserve.sandbox.prepare) its command, environment and directory replace
    ARGV, ENV and CWD, and its PID namespace is gone when this returns."""
    kw: dict = {"cwd": cwd, "env": env}
    if jail is not None:
        argv, kw = jail.argv, jail.popen_kwargs()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent, **kw,
        )
    except BaseException:
        if jail is not None:
            jail.close()
        raise
    if jail is not None:
        jail.started()
    try:
        if on_spawn is not None:
            on_spawn(proc.pid)
        return _supervise(proc, timeout, on_line, should_cancel, tick, tick_interval, stdin_data,
                          jail)
    finally:
        if jail is not None:
            jail.reap()
            jail.close()


def _supervise(proc: subprocess.Popen, timeout: float, on_line: Callable[[str], None],
               should_cancel: Callable[[], bool], tick: Callable[[], None], tick_interval: float,
               stdin_data: bytes | None, jail: Run | None) -> RunResult:
    pgid = proc.pid
    if stdin_data is not None:
        threading.Thread(target=_feed, args=(proc, stdin_data), daemon=True).start()
    lines: queue.Queue[bytes | None] = queue.Queue()

    def read() -> None:
        out = proc.stdout
        assert out is not None
        for raw in iter(lambda: out.readline(65536), b""):
            lines.put(raw)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    deadline = time.monotonic() + timeout
    next_tick = time.monotonic() + tick_interval
    outcome: str | None = None
    eof = False
    drain_until: float | None = None

    def deliver(raw: bytes) -> None:
        on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))

    while True:
        try:
            raw = lines.get(timeout=0.1)
            if raw is None:
                eof = True
            else:
                deliver(raw)
        except queue.Empty:
            pass
        now = time.monotonic()
        if proc.poll() is not None:
            if drain_until is None:
                # the script is done: whatever it left behind in its group (and namespace) goes too
                if jail is not None:
                    jail.kill()
                _killpg(pgid, signal.SIGKILL)
                drain_until = now + DRAIN_LIMIT
            if eof or now > drain_until:
                break
            continue
        if now >= next_tick:
            tick()
            next_tick = now + tick_interval
            if should_cancel():
                outcome = "cancelled"
        if outcome is None and now >= deadline:
            outcome = "timed out"
        if outcome is not None:
            if jail is not None:
                jail.kill()  # the namespace's init: everything in it dies at once
            terminate_group(pgid, leader=proc)
            proc.wait()
            drain_until = time.monotonic() + DRAIN_LIMIT
            _killpg(pgid, signal.SIGKILL)
            while time.monotonic() < drain_until:
                try:
                    raw = lines.get(timeout=0.1)
                except queue.Empty:
                    continue
                if raw is None:
                    break
                deliver(raw)
            break
    code = proc.wait()
    if outcome is not None:
        return RunResult(outcome, code)
    return RunResult("passed" if code == 0 else "failed", code)
