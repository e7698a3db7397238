"""What `gitserve serve` and its workers write to HOME/logs: connections, pushes, builds and
errors, one line each with the connection or build id; never a secret. And the CLI's error
root: a GitserveError is one `gitserve: ...` line, never a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.pushes import new_work, remote, timed_push
from tests.support.server import make_server
from tests.support.tools import gitserve_cmd, subprocess_env

pytestmark = pytest.mark.timeout(180)

CONF = """
repo gitolite-admin
    RW+ = admin
repo logged
    RW+ = alice
    option build.enable = 1
    option build.mode = sync
"""
SECRET = "hush-6b1f0c2e"
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \[([^\]]+)\] ")


def wait_for(path: Path, pattern: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if re.search(pattern, text, re.M):
            return text
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not in {path}:\n{text}")


def test_server_log_shows_connections_pushes_builds_and_errors(tmp_path: Path) -> None:
    srv = make_server(tmp_path / "srv", conf=CONF, users=("alice", "bob"))
    try:
        srv.admin_cli("admin", "set-secret", "logged", "TOKEN", input=SECRET + "\n")
        work = new_work(srv, "logged", "#!/bin/sh\necho token=$TOKEN\n")
        code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
        assert code == 0, lines
        build_id = remote(lines)[-1].split()[1]
        denied = srv.ssh("bob", "git-receive-pack", "'logged'")
        assert denied.returncode != 0
        assert srv.ssh("alice", "no-such-command").returncode != 0
        log_file = srv.home / "logs" / "server.log"
        text = wait_for(log_file, r"refused alice: unknown git/gitolite command")
    finally:
        srv.stop()
    text = log_file.read_text()
    lines = text.splitlines()
    assert all(LINE.match(line) for line in lines), text  # one event, one line
    conns = {LINE.match(line).group(2) for line in lines if "open from 127.0.0.1" in line}
    assert len(conns) >= 3 and all(re.fullmatch(r"c\d+", c) for c in conns), text
    # one connection's life, tagged with its id from open to close
    alice_push = next(line for line in lines if "push logged refs/heads/main" in line)
    cid = LINE.match(alice_push).group(2)
    mine = [line for line in lines if f"[{cid}]" in line]
    assert "open from 127.0.0.1" in mine[0] and "closed (" in mine[-1], mine
    assert any("authenticated as alice (key SHA256:" in line for line in mine), mine
    assert any("run git-receive-pack '/logged'" in line for line in mine), mine
    assert re.search(rf"INFO \[{cid}\] .*build {build_id} queued \(logged refs/heads/main ", text)
    assert re.search(rf"INFO \[{cid}\] .*build {build_id} passed", text)
    # errors: the denied push and the unknown command, as warnings with the user
    assert re.search(r"WARNING \[c\d+\] .*refused bob: W any logged bob DENIED", text), text
    assert re.search(r"WARNING \[c\d+\] .*refused alice: unknown git/gitolite command", text)
    assert "stopped" in lines[-1]
    # the worker logged the build's start and end under its build id
    workers = (srv.home / "logs" / "workers.log").read_text()
    assert re.search(rf"INFO \[build {build_id}\] .*start logged refs/heads/main", workers), workers
    assert re.search(rf"\[build {build_id}\] .*end: passed", workers), workers
    for name in ("server.log", "workers.log", "audit.log"):
        assert SECRET not in (srv.home / "logs" / name).read_text(), name


def test_json_log_format(tmp_path: Path) -> None:
    srv = make_server(tmp_path / "srv", users=("alice",),
                      serve_args=("--log-format", "json", "--log-level", "DEBUG", "--workers", "0"))
    try:
        assert srv.ssh("alice", "info").returncode == 0
        log_file = srv.home / "logs" / "server.log"
        wait_for(log_file, r'"message": "closed')
    finally:
        srv.stop()
    entries = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert {"time", "level", "ctx", "logger", "message"} <= set(entries[0])
    assert any(e["message"] == "authenticated as alice" or
               e["message"].startswith("authenticated as alice ") for e in entries)
    assert any(e["ctx"].startswith("c") and e["message"] == "run info" for e in entries)


def test_bad_log_level_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run(gitserve_cmd("--home", str(tmp_path), "serve", "--log-level", "LOUD"),
                         capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert out.returncode != 0
    assert out.stderr.splitlines() == [
        "gitserve: --log-level must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'"]
    assert "Traceback" not in out.stderr


def test_second_serve_on_one_home_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    srv = make_server(tmp_path / "srv", users=("alice",), serve_args=("--workers", "0"))  # no builds here
    try:
        out = subprocess.run(
            gitserve_cmd("--home", str(srv.home), "serve", "--listen", "127.0.0.1:0"),
            capture_output=True, text=True, env=subprocess_env(), timeout=60)
        assert out.returncode == 1
        assert "Traceback" not in out.stderr, out.stderr
        assert out.stderr.splitlines() == [
            f"gitserve: another gitserve serve runs on {srv.home} (pid {srv.proc.pid})"], out.stderr
        # the first server is untouched and says why the second stopped in its log
        assert srv.ssh("alice", "info").returncode == 0
        assert f"not started: another gitserve serve runs on {srv.home}" in \
            (srv.home / "logs" / "server.log").read_text()
    finally:
        srv.stop()
