"""The script runner on its own: live lines, exit codes, timeout and cancel kill the group."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from buildqueue.runner import run_script
from tests.support.tools import require_tool

pytestmark = pytest.mark.timeout(30)


def _run(tmp_path: Path, body: str, timeout: float = 10, **kw):
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    got: list[tuple[float, str]] = []
    t0 = time.monotonic()
    res = run_script([str(script)], tmp_path, {"PATH": os.environ["PATH"]}, timeout,
                     lambda line: got.append((time.monotonic() - t0, line)), **kw)
    return res, got, time.monotonic() - t0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} survived"
        time.sleep(0.05)


def test_lines_arrive_as_printed(tmp_path):
    res, got, _ = _run(tmp_path, "echo one\nsleep 1\necho two\n")
    assert res.status == "passed" and [line for _, line in got] == ["one", "two"]
    assert got[1][0] - got[0][0] >= 0.8
    assert got[0][0] < 2.0


def test_exit_code_stderr_and_stdin(tmp_path):
    res, got, _ = _run(tmp_path, "cat; echo err >&2; printf 'no newline'; exit 7\n")
    assert res.status == "failed" and res.exit_code == 7
    assert [line for _, line in got] == ["err", "no newline"]


def test_stdin_data_is_fed(tmp_path):
    res, got, _ = _run(tmp_path, "while read a b; do echo \"$b:$a\"; done\n", stdin_data=b"1 x\n2 y\n")
    assert [line for _, line in got] == ["x:1", "y:2"]


def test_timeout_kills_the_whole_group(tmp_path):
    pid_file = tmp_path / "pid"
    res, got, took = _run(tmp_path, f"sleep 100 &\necho $! > {pid_file}\necho waiting\nwait\n", timeout=1)
    assert res.status == "timed out" and took < 10
    _gone(int(pid_file.read_text()))


def test_term_ignoring_script_is_killed(tmp_path):
    res, _, took = _run(tmp_path, "trap '' TERM\nwhile :; do sleep 0.1; done\n", timeout=0.5)
    assert res.status == "timed out" and took < 10


def test_cancel(tmp_path):
    flag = {"n": 0}

    def should_cancel():
        flag["n"] += 1
        return flag["n"] >= 2

    res, _, took = _run(tmp_path, "sleep 100\n", should_cancel=should_cancel, tick_interval=0.2)
    assert res.status == "cancelled" and took < 10


def test_leftover_background_process_does_not_hang(tmp_path):
    pid_file = tmp_path / "pid"
    res, got, took = _run(tmp_path, f"sleep 100 &\necho $! > {pid_file}\necho done\n")
    assert res.status == "passed" and took < 10  # not the 100 s of the leftover sleep
    _gone(int(pid_file.read_text()))


def test_continuous_output_still_times_out(tmp_path):
    res, got, took = _run(tmp_path, "while :; do echo spam; done\n", timeout=1)
    assert res.status == "timed out" and took < 8 and len(got) > 100


def test_sandbox_hides_home_keeps_workspace_and_still_kills_the_namespace(tmp_path, monkeypatch):
    from gitserve import sandbox

    require_tool("bwrap")
    home = tmp_path / "home"
    objects = home / "repositories" / "r.git" / "objects"
    objects.mkdir(parents=True)
    os.chmod(tmp_path, 0o755)  # as root the script is nobody: let it reach the object store
    for d in (home, home / "repositories", objects.parent, objects):
        d.chmod(0o755)
    (home / "secrets.key").write_text("KEY-1234\n")
    monkeypatch.setenv("GITSERVE_HOME", str(home))
    work = sandbox.new_workdir(sandbox.work_root(home / "work"))
    script = work / "src" / "s.sh"
    script.write_text(f"#!/bin/sh\ncat {home}/secrets.key 2>/dev/null\n"
                      f"ls {objects} && echo listed\n"
                      f"touch {objects}/x 2>/dev/null || echo ro\n"
                      f"echo home: $(ls -A {home})\n"
                      f"ls {work.parent} 2>/dev/null | grep . && echo leaked\n"
                      "unshare --user true 2>/dev/null && echo nested-userns\n"
                      "python3 -c 'import threading; t = threading.Thread(target=print, args=(\"threads\",)); "
                      "t.start(); t.join()'\n"
                      "echo out > out.txt\n")
    script.chmod(0o755)
    policy = sandbox.Policy()
    sandbox.hand_over(policy, work)
    got: list[str] = []
    jail = sandbox.prepare(policy, work, ["/build/src/s.sh"], {}, ro=[objects])
    res = run_script([], tmp_path, {}, 10, got.append, jail=jail)
    assert res.status == "passed", got
    assert "KEY-1234" not in got and "listed" in got and "ro" in got and "leaked" not in got, got
    assert "nested-userns" not in got and "threads" in got, got  # no user namespace inside
    assert "home: repositories" in got, got  # only the mount point of the bound object store
    assert (work / "src" / "out.txt").read_text() == "out\n"
    nap = f"sleep 60.{time.time_ns() % 1000000}"  # a command line no other process has
    script.write_text(f"#!/bin/sh\n(setsid sh -c '{nap}' &)\n{nap} & echo $!\nwait\n")
    got.clear()
    t0 = time.monotonic()
    res = run_script([], tmp_path, {}, 0.5, got.append,
                     jail=sandbox.prepare(policy, work, ["/build/src/s.sh"], {}))
    assert res.status == "timed out" and time.monotonic() - t0 < 5
    # nothing of the namespace is left (the pids it printed are the namespace's own)
    assert not _pids_named(nap), "a sandboxed process survived"


def _pids_named(cmdline: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip().decode()
            except OSError:
                continue
            if raw == cmdline or raw.endswith(f"-c {cmdline}"):
                found.append(int(entry.name))
    return found
