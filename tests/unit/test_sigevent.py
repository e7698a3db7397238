"""Signal handlers that wake a main loop must take no lock (gitserve/sigevent.py): a
threading.Event set from a handler deadlocks when the signal lands while the main thread
holds the Event's own lock, which stopped `gitserve sites` for good in a CI run (every
deploy after it timed out waiting for processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy import sitesctl
from deploy.supervisor import Supervisor
from gitserve.settings import Settings

# a main loop as the daemons have it (clear, work, wait), woken by SIGALRM every 20 us of
# wall clock (a kernel timer: as steady on a loaded machine as on an idle one); prints
# "survived" if the loop outlives the burst (argv: the event class, the burst's seconds)
LOOP = """
import signal, sys, threading, time
from gitserve.sigevent import SignalEvent
ev = SignalEvent() if sys.argv[1] == "signal" else threading.Event()
signal.signal(signal.SIGALRM, lambda *_: ev.set())
end = time.monotonic() + float(sys.argv[2])
signal.setitimer(signal.ITIMER_REAL, 0.00002, 0.00002)
while time.monotonic() < end:
    ev.clear()
    ev.wait(0.001)
signal.setitimer(signal.ITIMER_REAL, 0)
print("survived", flush=True)
"""


def _loop(kind: str, burst: float, timeout: float) -> bool:
    """Did the loop with event KIND outlive BURST seconds of signals (within TIMEOUT)?"""
    proc = subprocess.Popen([sys.executable, "-c", LOOP, kind, str(burst)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL,
                            cwd=Path(__file__).resolve().parents[2], start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return b"survived" in out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return False


def test_a_loop_woken_by_signal_bursts_never_deadlocks() -> None:
    # the control: with threading.Event the same loop deadlocks (or its handlers recurse
    # into a RecursionError) within a second, nearly always
    assert not all(_loop("threading", 1.5, 3.0) for _ in range(3))
    assert _loop("signal", 3.0, 30.0)


def _catches(pid: int, signum: int) -> bool:
    """Has PID a handler for SIGNUM (SigCgt of /proc/PID/status)?"""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False


def test_the_sites_supervisor_outlives_a_burst_of_wakeups(tmp_path) -> None:
    """Every deploy, keeper start and keeper exit sends SIGHUP; a burst of them must leave
    `gitserve sites` acting: it still stops at SIGTERM, at once."""
    home = tmp_path / "home"
    home.mkdir()
    settings = Settings(home=home)
    pid, started = sitesctl.ensure_running(settings)
    assert started
    try:
        assert _catches(pid, signal.SIGHUP), "gitserve sites has no SIGHUP handler once it runs"
        deadline = time.monotonic() + 2.5
        sent = 0
        while time.monotonic() < deadline:
            for _ in range(200):
                os.kill(pid, signal.SIGHUP)
            sent += 200
            time.sleep(0.001)
        assert sitesctl.running_pid(settings) == pid, "gitserve sites died of the burst"
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        while sitesctl.running_pid(settings) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sitesctl.running_pid(settings) is None, f"gitserve sites hangs after {sent} SIGHUPs"
    finally:
        if sitesctl.running_pid(settings) is not None:
            os.kill(pid, signal.SIGKILL)


class _Charge:
    """A keeper of the supervisor's whose reconcile fails as the deadlocked handler's
    RecursionError did: out of the loop, past tick()'s per-keeper guard."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def reconcile(self) -> None:
        self.calls.append("reconcile")
        raise KeyboardInterrupt

    def stop(self) -> None:
        self.calls.append("stop")

    def hand_over(self) -> None:
        self.calls.append("hand_over")


def test_a_supervisor_that_crashes_leaves_the_sites_running(tmp_path) -> None:
    """Only a stop asked for (SIGTERM) stops every site; a supervisor whose loop dies of an
    error leaves nginx and the processes running for the next one, as kill -9 does (before,
    the RecursionError above stopped every site of the home)."""
    home = tmp_path / "home"
    home.mkdir()
    charge = _Charge()
    sup = Supervisor(Settings(home=home), [charge])
    sup.acquire()
    with pytest.raises(KeyboardInterrupt):
        sup.run()
    assert charge.calls == ["reconcile", "hand_over"]
    assert sitesctl.running_pid(Settings(home=home)) is None  # the lock went with it

    stopped = _Charge()
    stopped.reconcile = lambda: stopped.calls.append("reconcile")  # type: ignore[method-assign]
    sup = Supervisor(Settings(home=home), [stopped])
    sup.acquire()
    sup.stopping.set()
    sup.run()
    assert stopped.calls == ["stop"]
