"""serve's local workers are replaced when they die; one that keeps dying at start (Redis
unreachable) is replaced less and less often instead of a Python start every second."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from buildqueue import worker
from buildqueue.worker import LocalWorkers, respawn_delay


def test_respawn_delay_doubles_for_quick_deaths_and_resets_after_a_steady_run() -> None:
    waits, previous = [], 0.0
    for _ in range(7):
        previous = respawn_delay(0.5, previous)
        waits.append(previous)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
    assert respawn_delay(worker.STEADY, 16.0) == 0.0  # it ran: something else killed it


class _Fake(LocalWorkers):
    """LocalWorkers whose 'worker' is `sh -c 'sleep LIFE'`: the supervision is what is tested."""

    def __init__(self, life: float) -> None:
        super().__init__(Path("/nonexistent"), "redis://127.0.0.1:9/0", 1)
        self.life, self.spawned = life, []

    def _spawn(self) -> subprocess.Popen:
        self.spawned.append(time.monotonic())
        return subprocess.Popen(["sh", "-c", f"sleep {self.life}"])


def _scaled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "RESPAWN_CHECK", 0.05)
    monkeypatch.setattr(worker, "RESPAWN_MAX", 0.4)
    monkeypatch.setattr(worker, "STEADY", 0.5)


def test_a_worker_dying_at_start_is_respawned_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    _scaled(monkeypatch)
    fake = _Fake(0).start()
    time.sleep(2.5)
    fake.stop()
    gaps = [b - a for a, b in zip(fake.spawned, fake.spawned[1:])]
    # waits 0.05, 0.1, 0.2, 0.4, 0.4...: about 9 starts in 2.5 s; without backoff one per check (50)
    assert 4 <= len(fake.spawned) <= 12, gaps
    assert gaps[2] > gaps[0] and all(g >= 0.35 for g in gaps[4:]), gaps


def test_a_worker_that_ran_is_replaced_at_the_next_check(monkeypatch: pytest.MonkeyPatch) -> None:
    _scaled(monkeypatch)
    fake = _Fake(0.6).start()  # lives past STEADY, then dies
    time.sleep(2.2)
    fake.stop()
    gaps = [b - a for a, b in zip(fake.spawned, fake.spawned[1:])]
    assert len(gaps) >= 2 and all(g < 0.6 + 0.3 for g in gaps), gaps
