"""`builds cancel`'s clean-up aimed at another process group through Redis (redteam2).

A cancelled build is ended by rq's on_stopped callback (buildqueue.jobs.stopped) in the
worker, which SIGTERMs and then SIGKILLs the build script's process group: the group id it
read from the build's record in Redis. Whoever holds only the Redis password set `pgid` of
a running build to any group (sshd's, nginx's, the server's own; 0 is the worker's own) and
published rq's stop-job command for it: the worker, root on a server host, killed that
group. Now the callback kills only a group whose leader carries the build's id (its
sandbox's `--setenv GITSERVE_BUILD_ID N`, or that variable in an unsandboxed script's
environment), never its own group or init's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.builds import wait_for
from tests.support.server import make_server

pytestmark = pytest.mark.timeout(240)

CONF = """
repo gitolite-admin
    RW+ = admin
repo slow
    RW+ = alice
    option build.enable = 1
    option build.mode = async
"""
SLOW = "#!/bin/sh\necho started\nsleep 60\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("cancel-pgid"), conf=CONF, users=("alice",))
    try:
        yield server
    finally:
        server.stop()


def test_a_cancel_never_kills_a_group_redis_names(srv):
    import redis
    from rq.command import send_stop_job_command

    from buildqueue import keys, records

    victim = subprocess.Popen(["sleep", "300"], start_new_session=True)  # e.g. sshd's group
    r = redis.Redis(unix_socket_path=str(srv.home / "run" / "redis.sock"))
    try:
        work = srv.clone("alice", "slow")
        script = work / ".gitserve" / "build"
        script.parent.mkdir(parents=True)
        script.write_text(SLOW)
        script.chmod(0o755)
        srv.git("alice", "add", "-A", cwd=work)
        srv.git("alice", "commit", "-qm", "slow", cwd=work)
        srv.git("alice", "push", "-q", "origin", "HEAD:refs/heads/main", cwd=work, timeout=120)
        build_id = wait_for(lambda: next((i for i in records.list_ids(r, "slow")
                                          if records.get(r, i).status == "running"
                                          and r.hget(keys.build(i), "pgid")), None), timeout=60)
        # the real group is recognized as the build's (its leader carries the build id)
        from buildqueue.jobs import _builds_group

        real = int(r.hget(keys.build(build_id), "pgid"))
        assert _builds_group(real, build_id), open(f"/proc/{real}/cmdline", "rb").read()
        # the attacker: the victim's group in the record, then rq's stop command
        r.hset(keys.build(build_id), "pgid", str(victim.pid))
        send_stop_job_command(r, keys.build_job(build_id))
        wait_for(lambda: records.get(r, build_id).is_final, timeout=60)
        time.sleep(1.0)  # the callback's SIGTERM, grace, SIGKILL
        assert victim.poll() is None, "the worker killed a process group Redis named"
        assert records.get(r, build_id).status == "cancelled"
    finally:
        victim.kill()
        victim.wait()
        r.close()
    assert os.getpgrp() > 0


def _wait_exec(pid: int) -> None:
    deadline = time.monotonic() + 10
    while not (Path(f"/proc/{pid}/cmdline").read_bytes() and Path(f"/proc/{pid}/environ").read_bytes()):
        assert time.monotonic() < deadline, f"process {pid} never showed its command line"
        time.sleep(0.005)


def test_only_a_leader_carrying_the_build_id_is_the_builds_group():
    from buildqueue.jobs import _builds_group

    env = {**os.environ, "GITSERVE_BUILD_ID": "77"}
    plain = subprocess.Popen(["sleep", "30"], start_new_session=True, env=env)  # unsandboxed
    jailed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--setenv",
                               "GITSERVE_BUILD_ID", "78"],
                              start_new_session=True)  # as bwrap's argv carries it
    for proc in (plain, jailed):  # Popen returns at exec's point of no return, before the
        _wait_exec(proc.pid)      # kernel has set the new cmdline and environ (read as b"")
    try:
        assert _builds_group(plain.pid, "77") and not _builds_group(plain.pid, "7")
        assert _builds_group(jailed.pid, "78") and not _builds_group(jailed.pid, "77")
        assert not any(_builds_group(p, "77") for p in (0, 1, os.getpgrp(), os.getpid()))
    finally:
        for p in (plain, jailed):
            p.kill()
            p.wait()
