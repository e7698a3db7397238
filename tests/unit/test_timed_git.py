"""tests/support/pushes.timed_git, which every push assertion reads: the last lines a git
writes just before it exits are never lost. The race: select() times out after a quiet
half second, then git writes its last lines (`Enable: green`, the summary, `To ...`) and
exits, all before the reader's poll() sees the exit. The reader used to stop there with the
lines unread; a CI run's test_apps saw a push that exited 0 without its `Enable: green`.
Here the race is forced: the select that times out returns only once the process has
written and exited."""

from __future__ import annotations

import os
import select
import subprocess
from pathlib import Path

from tests.support import pushes


def test_lines_written_just_before_exit_are_read(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "git"
    fake.write_text("#!/bin/sh\nprintf 'remote: Enable: green\\nremote: done: live is green\\n' >&2\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    real_select = select.select
    started: list[subprocess.Popen] = []
    forced = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    def late_timeout(rlist, wlist, xlist, timeout=None):
        if timeout and not forced:  # the first waiting select "times out" after git is gone
            forced.append(True)
            os.waitid(os.P_PID, started[0].pid, os.WEXITED | os.WNOWAIT)
            return [], [], []
        return real_select(rlist, wlist, xlist, timeout)

    monkeypatch.setattr(pushes.subprocess, "Popen", Recorded)
    monkeypatch.setattr(pushes.select, "select", late_timeout)
    code, lines = pushes.timed_git(env, "push", timeout=10)
    assert forced and code == 0
    assert pushes.remote(lines) == ["Enable: green", "done: live is green"], lines
