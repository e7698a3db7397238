"""Builds with an external Redis and a plain `rq worker` that reaches gitserve only over SSH
(as a build host does), and the failure cases: worker killed, Redis stopped mid-push."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from buildqueue.embedded import EmbeddedRedis
from tests.support.builds import rq_worker_argv, wait_for
from tests.support.server import make_server
from tests.support.pushes import new_work, remote, timed_push
from tests.support.tools import subprocess_env

pytestmark = pytest.mark.timeout(120)

CONF = """
repo gitolite-admin
    RW+ = admin
repo app
    RW+ = alice
    option build.enable = 1
repo gate
    RW+ = alice
    option build.enable = 1
    option build.mode = gate
"""


@pytest.fixture
def remote_setup(tmp_path):
    redis_dir = tmp_path / "redis"
    rs = EmbeddedRedis(redis_dir / "r.sock", redis_dir / "data").start()
    # the URL in gitserve.toml serves the CLI (`gitserve builds ...`); the flag is what serve obeys
    server = make_server(tmp_path / "srv", conf=CONF, users=("alice",),
                         # Redis gone is the case here, not waiting for its return (that is
                         # tests/cluster/test_redis_outage.py): a push waits 2 s, not 30
                         settings={"redis": {"url": rs.url, "outage_wait": 2.0}},
                         serve_args=("--redis-url", rs.url))
    assert not (server.home / "run" / "redis.sock").exists()  # no embedded Redis
    host = tmp_path / "buildhost"  # another directory, its own copies of the keys, no HOME
    host.mkdir()
    shutil.copy(server.home / "worker_key", host / "worker_key")
    shutil.copy(server.home / "secrets.key", host / "secrets.key")
    env = subprocess_env(GITSERVE_WORKER_KEY=str(host / "worker_key"),
                         GITSERVE_SECRETS_KEY_FILE=str(host / "secrets.key"),
                         GITSERVE_BUILD_CACHE=str(host / "cache"), GITSERVE_NO_LOCAL_FETCH="1")
    env.pop("GITSERVE_HOME", None)
    worker = subprocess.Popen(rq_worker_argv(rs.url, ("builds",)), cwd=host, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(host / "worker.log", "w"), start_new_session=True)
    try:
        yield server, rs, worker, host
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        server.stop()
        rs.stop()


def test_remote_worker_fetches_over_ssh(remote_setup):
    server, _, _, host = remote_setup
    work = new_work(server, "app", "#!/bin/sh\necho built on build host: $(git rev-parse HEAD)\n")
    code, lines = timed_push(server, "alice", work, "origin", "HEAD:main")
    sha = server.git("alice", "rev-parse", "HEAD", cwd=work).stdout.strip()
    msgs = remote(lines)
    assert code == 0 and f"built on build host: {sha}" in msgs, (lines, (host / "worker.log").read_text())
    assert " passed in " in msgs[-1]
    assert (host / "cache" / "app.git").is_dir()  # the per-repo cache, fetched over SSH
    # gate: the commit is on no branch yet, the worker fetches it through the hidden ref
    work = new_work(server, "gate", "#!/bin/sh\necho gate ok\n")
    code, lines = timed_push(server, "alice", work, "origin", "HEAD:main")
    assert code == 0 and "gate ok" in remote(lines), lines
    assert "refs/gitserve" not in server.git("alice", "ls-remote", server.url("gate")).stdout


def test_worker_killed_during_build(remote_setup):
    server, rs, worker, _ = remote_setup
    work = new_work(server, "app", "#!/bin/sh\necho started\nsleep 60\necho never\n")
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(out=timed_push(server, "alice", work, "origin", "HEAD:main")))
    t.start()
    log = server.home / "logs"
    time.sleep(0.2)
    # wait until the build is running, then kill the whole worker (parent and work-horse)
    wait_for(lambda: running(rs), timeout=30)
    kill_tree(worker.pid)  # the host dies: worker, its work-horse (own session) and the script
    t.join(60)
    assert not t.is_alive()
    code, lines = result["out"]
    msgs = remote(lines)
    assert code == 0 and "started" in msgs and "gitserve: worker lost" in msgs, lines
    assert " failed in " in msgs[-1] and "never" not in msgs
    del log


def running(rs) -> bool:
    """A build is running and its script has printed its first line."""
    import redis

    r = redis.Redis.from_url(rs.url)
    try:
        return any(r.xlen(k) > 0 for k in r.scan_iter("gitserve:build:*:log"))
    finally:
        r.close()


def kill_tree(pid: int) -> None:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_redis_stopped_during_push_and_down_at_push(remote_setup):
    server, rs, _, _ = remote_setup
    work = new_work(server, "app", "#!/bin/sh\necho begin\nsleep 8\necho end\n")
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(out=timed_push(server, "alice", work, "origin", "HEAD:main")))
    t.start()
    wait_for(lambda: running(rs), timeout=30)
    rs.stop()
    t.join(60)
    assert not t.is_alive()
    code, lines = result["out"]
    assert code == 0, lines
    assert any("lost contact with Redis" in m for m in remote(lines)), lines
    # Redis down at push time: sync push completes and says so; gate rejects the ref
    (work / "more").write_text("x")
    server.git("alice", "add", "more", cwd=work)
    server.git("alice", "commit", "-qm", "more", cwd=work)
    code, lines = timed_push(server, "alice", work, "origin", "HEAD:main")
    assert code == 0 and any(m.startswith("build of refs/heads/main could not be queued: Redis unreachable")
                             for m in remote(lines)), lines
    work = new_work(server, "gate", "#!/bin/sh\necho never\n")
    code, lines = timed_push(server, "alice", work, "origin", "HEAD:main")
    assert code != 0
    assert any("[remote rejected]" in line and "build could not be queued: Redis unreachable" in line
               for _, line in lines), lines
