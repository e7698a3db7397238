"""A run's cgroups (gitserve/sandbox_cgroup.py) on this host's real cgroup hierarchies."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from gitserve import sandbox_cgroup

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def memory_base():
    found = sandbox_cgroup.parent("memory")
    if os.geteuid() != 0 or found is None:
        pytest.skip("needs a memory cgroup this process may create children in (root, v1 here)")
    return found[0]


def test_limits_oom_count_and_peak(memory_base):
    groups = sandbox_cgroup.make(pids_limit=16, memory_ceiling=32 << 20)
    assert groups is not None and groups.memory
    try:
        proc = subprocess.run(["python3", "-c", "x = bytearray(256 << 20)"],
                              preexec_fn=groups.join, capture_output=True, timeout=30)
        assert proc.returncode == -9  # the kernel's OOM kill inside the cgroup
        assert groups.oom_kills() == 1 and groups.peak() >= 16 << 20
    finally:
        groups.remove()
    assert not any(d.exists() for d in groups.dirs)


def test_sweep_removes_only_stale_empty_run_cgroups(memory_base):
    stale = memory_base / "gitserve-sweeptest-empty"
    busy = memory_base / "gitserve-sweeptest-busy"
    stale.mkdir()
    busy.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: (busy / "cgroup.procs").write_text("0"))
    try:
        sandbox_cgroup.sweep(memory_base)
        assert stale.exists()  # young: a run being set up may not have joined it yet
        removed = sandbox_cgroup.sweep(memory_base, now=time.time() + 2 * sandbox_cgroup.STALE_AFTER)
        assert removed >= 1 and not stale.exists() and busy.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
        for d in (stale, busy):
            try:
                d.rmdir()
            except OSError:
                pass


def test_serve_start_line_says_the_cgroups_hold_the_limits(memory_base):
    from gitserve import sandbox

    if sandbox.unavailable_reason(sandbox.Policy()) is not None:
        pytest.skip("no sandbox here")
    line = sandbox.describe(sandbox.Policy())
    held = " ".join(c for c in ("memory", "pids") if sandbox_cgroup.parent(c) is not None)
    assert line.endswith(f"disk 4G (cgroups: {held}))"), line
