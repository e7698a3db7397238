"""Builds through the real thing: `git push` over OpenSSH to `gitserve serve` with its embedded
Redis and local rq workers; the build log comes back as `remote:` lines while the push waits."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time

import pytest

from tests.support.pushes import new_work, remote, timed_push
from tests.support.server import make_server

pytestmark = pytest.mark.timeout(120)

CONF = """
repo gitolite-admin
    RW+ = admin
repo live
    RW+ = alice
    R = bob
    option build.enable = 1
repo gated
    RW+ = alice
    option build.enable = 1
    option build.mode = gate
repo later
    RW+ = alice
    R = bob
    option build.enable = 1
    option build.mode = async
repo secretive
    RW+ = alice
    option build.enable = 1
    option build.timeout = 30
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("builds-srv"), conf=CONF, users=("alice", "bob", "carol"))
    try:
        yield server
    finally:
        server.stop()


def test_sync_build_lines_arrive_live(srv):
    work = new_work(srv, "live", "#!/bin/sh\necho first line\nsleep 4\necho second line\n")
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
    assert code == 0, lines
    at = {line[len("remote: "):].strip(): t for t, line in lines if line.startswith("remote: ")}
    assert at["second line"] - at["first line"] >= 3.5, lines
    summary = remote(lines)[-1]
    assert re.fullmatch(r"build \d+ passed in \d+\.\ds", summary), lines
    build_id = summary.split()[1]
    # bob (R) sees it; carol (no access) gets the same answer as for a build that does not exist
    out = srv.ssh("bob", "builds", "log", build_id)
    assert out.returncode == 0 and out.stdout.splitlines() == ["first line", "second line", summary]
    assert build_id in srv.ssh("bob", "builds", "list").stdout
    denied = srv.ssh("carol", "builds", "show", build_id)
    assert denied.returncode != 0 and f"no build {build_id}" in denied.stderr
    assert srv.ssh("carol", "builds", "list").stdout.strip() == ""
    assert "W access" in srv.ssh("bob", "builds", "retry", build_id).stderr
    cli = srv.admin_cli("builds", "show", build_id).stdout
    assert "status:   passed" in cli and "pusher:   alice" in cli


def test_failing_build(srv):
    work = new_work(srv, "live", "#!/bin/sh\necho about to fail\nexit 2\n", {"f": "2"})
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
    assert code == 0  # sync: the ref moved; the build result is reported
    msgs = remote(lines)
    assert "about to fail" in msgs and "gitserve: exit code 2" in msgs
    assert re.fullmatch(r"build \d+ failed in \d+\.\ds", msgs[-1])


def test_gate_rejects_and_leaves_refs(srv):
    work = new_work(srv, "gated", "#!/bin/sh\necho good\n")
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
    assert code == 0, lines
    before = srv.git("alice", "ls-remote", srv.url("gated")).stdout
    before_refs = subprocess.run(["git", "for-each-ref"], cwd=srv.repo_path("gated"),
                                 capture_output=True, text=True).stdout
    (work / ".gitserve/build").write_text("#!/bin/sh\necho bad\nexit 1\n")
    srv.git("alice", "commit", "-qam", "break", cwd=work)
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
    assert code != 0
    rejected = [line for _, line in lines if "[remote rejected]" in line]
    assert len(rejected) == 1 and re.search(r"-> main \(build \d+ failed\)$", rejected[0]), lines
    assert "bad" in remote(lines)
    assert srv.git("alice", "ls-remote", srv.url("gated")).stdout == before
    assert subprocess.run(["git", "for-each-ref"], cwd=srv.repo_path("gated"),
                          capture_output=True, text=True).stdout == before_refs


def test_async_and_follow(srv):
    work = new_work(srv, "later", "#!/bin/sh\necho step one\nsleep 2\necho step two\n")
    t0 = time.monotonic()
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
    assert code == 0 and time.monotonic() - t0 < 10
    (queued,) = [m for m in remote(lines) if " queued: " in m]
    build_id = queued.split()[1]
    assert queued == f"build {build_id} queued: ssh -p {srv.port} git@127.0.0.1 builds log {build_id} --follow"
    out = srv.ssh("bob", "builds", "log", build_id, "--follow")
    assert out.stdout.splitlines()[:2] == ["step one", "step two"]
    assert re.fullmatch(rf"build {build_id} passed in \d+\.\ds", out.stdout.splitlines()[-1])


def test_secret_never_shown(srv):
    value = "very-secret-9f8e7d"
    srv.admin_cli("admin", "set-secret", "secretive", "DEPLOY_KEY", input=value + "\n")
    work = new_work(srv, "secretive", "#!/bin/sh\necho key=$DEPLOY_KEY\n")
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
    msgs = remote(lines)
    assert "key=***" in msgs, lines
    assert all(value not in line for _, line in lines)
    build_id = msgs[-1].split()[1]
    assert value not in srv.ssh("alice", "builds", "log", build_id).stdout


def test_server_restart_keeps_queued_builds(tmp_path):
    conf = "repo gitolite-admin\n    RW+ = admin\nrepo q\n    RW+ = alice\n    option build.enable = 1\n    option build.mode = async\n"
    server = make_server(tmp_path / "srv", conf=conf, users=("alice",), serve_args=("--workers", "0"))
    try:
        work = new_work(server, "q", "#!/bin/sh\necho after restart\n")
        code, lines = timed_push(server, "alice", work, "origin", "HEAD:main")
        build_id = [m for m in remote(lines) if " queued: " in m][0].split()[1]
        import redis

        r = redis.Redis(unix_socket_path=str(server.home / "run" / "redis.sock"))
        assert r.hget(f"gitserve:build:{build_id}", "status") == b"queued"
        r.close()
        helpers = children(server.proc.pid)
        assert any("redis-server" in c for c in helpers.values()), helpers
        server.stop()
        gone(helpers)  # a clean stop takes its Redis (and workers) along
        server.start(("--workers", "1"))
        out = server.ssh("alice", "builds", "log", build_id, "--follow", timeout=60)
        assert out.stdout.splitlines()[0] == "after restart"
        assert " passed in " in out.stdout.splitlines()[-1]
    finally:
        server.stop()


def test_pusher_disconnect_loses_nothing(srv):
    import signal

    work = new_work(srv, "live", "#!/bin/sh\necho part one\nsleep 3\necho part two\n", {"g": "3"})
    proc = subprocess.Popen(["git", "push", "origin", "HEAD:main"], cwd=work, env=srv.client_env("alice"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    buf = b""
    deadline = time.monotonic() + 30
    while b"part one" not in buf and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            buf += os.read(proc.stderr.fileno(), 4096)
    assert b"part one" in buf
    os.killpg(proc.pid, signal.SIGKILL)  # the pusher's laptop goes away
    proc.wait(10)
    listing = srv.admin_cli("builds", "list", "--repo", "live").stdout.splitlines()
    build_id = listing[1].split()[0]
    out = srv.admin_cli("builds", "log", build_id, "--follow").stdout.splitlines()
    assert out[:2] == ["part one", "part two"] and re.fullmatch(rf"build {build_id} passed in \d+\.\ds", out[-1])


def children(pid: int) -> dict[int, str]:
    """Direct children of PID with their command lines."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            cmd = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
            found[int(entry)] = cmd
    return found


def gone(procs: dict[int, str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    for pid, cmd in procs.items():
        while True:
            try:
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                break
            if state == "Z":
                break
            assert time.monotonic() < deadline, f"still running: {cmd}"
            time.sleep(0.1)


def test_killed_serve_takes_redis_and_workers_along(tmp_path):
    import signal

    server = make_server(tmp_path / "srv", users=("alice",))
    try:
        helpers = children(server.proc.pid)
        kinds = sorted("redis" if "redis-server" in c else "worker" for c in helpers.values()
                       if "redis-server" in c or " worker " in c)
        assert kinds == ["redis", "worker", "worker", "worker"], helpers  # 2 build, 1 notify
        os.kill(server.proc.pid, signal.SIGKILL)  # no chance to clean up
        gone(helpers)
    finally:
        server.stop()
