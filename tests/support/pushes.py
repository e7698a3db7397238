"""Pushing to a test server as a user sees it: stderr lines with their arrival times, and the
`remote:` lines among them (build logs, deploy steps, Gitolite's messages)."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from pathlib import Path

from tests.support.server import GitServer


def timed_git(env: dict[str, str], *args: str, cwd: Path | None = None,
              timeout: float = 90) -> tuple[int, list[tuple[float, str]]]:
    """git ARGS, with the time each stderr line arrived (lines as the user sees them)."""
    proc = subprocess.Popen(["git", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    lines: list[tuple[float, str]] = []
    buf = b""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            # git exited: what it wrote before is in the pipe by now, though the select above
            # may have timed out just before its last lines came (then they and the exit both
            # came before poll()): look once more. Lost lines here failed a CI run's test_apps
            # (a push that exited 0 "without" its `Enable: green`).
            if proc.poll() is not None and not select.select([fd], [], [], 0)[0]:
                break
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        *parts, buf = re.split(rb"[\r\n]", buf)
        now = time.monotonic() - t0
        lines += [(now, p.decode(errors="replace").rstrip()) for p in parts if p.strip()]
    proc.wait(10)
    if buf.strip():
        lines.append((time.monotonic() - t0, buf.decode(errors="replace").rstrip()))
    return proc.returncode, lines


def timed_push(srv: GitServer, user: str, work: Path, *args: str, timeout: float = 90):
    """git push as USER over ssh, with the time each stderr line arrived."""
    return timed_git(srv.client_env(user), "push", *args, cwd=work, timeout=timeout)


def remote(lines) -> list[str]:
    return [line[len("remote: "):].strip() for _, line in lines if line.startswith("remote: ")]


def new_work(srv: GitServer, repo: str, script: str, files: dict[str, str] | None = None) -> Path:
    work = srv.clone("alice", repo)
    for name, text in {".gitserve/build": script, **(files or {})}.items():
        p = work / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        if name == ".gitserve/build":
            p.chmod(0o755)
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-q", "-m", "build", cwd=work)
    return work
