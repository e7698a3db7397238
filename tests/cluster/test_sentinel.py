"""Redis Sentinel (SPEC §10): gitserve serve and its workers follow a failover.

A real setup on 127.0.0.1: a Redis master and replica, three redis-sentinels; `gitserve serve`
with `[redis] sentinels`, two `gitserve worker --url redis+sentinel://...` processes. During a
loop of 20 pushes that each queue a build, the master is killed with SIGKILL: the sentinels
promote the replica, and every build still ends exactly once with its whole log."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.support.pushes import new_work
from tests.support.sentinel import MASTER_NAME, PASSWORD, SentinelCluster
from tests.support.server import make_server
from tests.support.tools import gitserve_cmd, subprocess_env

pytestmark = pytest.mark.timeout(400)

LINES = 12
SCRIPT = "#!/bin/sh\nfor i in $(seq 1 %d); do echo \"line $i of $GITSERVE_BUILD_ID\"; " \
         "sleep 0.05; done\n" % LINES
CONF = """
repo gitolite-admin
    RW+ = admin
repo q
    RW+ = alice
    option build.enable = 1
    option build.mode = async
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = SentinelCluster(tmp_path_factory.mktemp("sentinel"))
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture(scope="module")
def srv(cluster, tmp_path_factory):
    # after the kill no replica is left, so each push's Redis WAIT (tests/cluster/
    # test_sentinel_wait.py is about it) runs to its timeout: 0.5 s here, not the default 2 s
    redis = {"sentinels": cluster.addresses, "master_name": MASTER_NAME, "password": PASSWORD,
             "wait_timeout": 0.5}
    server = make_server(tmp_path_factory.mktemp("sentinel-srv"), conf=CONF, users=("alice",),
                         settings={"redis": redis})
    workers = []
    try:
        for _ in range(2):
            workers.append(subprocess.Popen(
                gitserve_cmd("--home", str(server.home), "worker"), env=subprocess_env(),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True))
        yield server
    finally:
        import os
        import signal

        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
            w.wait(10)
        server.stop()


def test_settings_become_one_sentinel_url(srv, cluster):
    assert srv.settings.effective_redis_url == cluster.url
    assert srv.settings.external_redis


def push_builds(srv, cluster, count: int, kill_after: int) -> tuple[list[str], list[float]]:
    """COUNT pushes to q, each queueing one async build; the master is SIGKILLed after push
    KILL_AFTER. Returns the build ids and each push's duration."""
    work = new_work(srv, "q", SCRIPT)
    ids: list[str] = []
    took: list[float] = []
    for i in range(count):
        (work / "n.txt").write_text(f"{i}\n")
        srv.git("alice", "add", "n.txt", cwd=work)
        srv.git("alice", "commit", "-qm", f"push {i}", cwd=work)
        start = time.monotonic()
        out = srv.git("alice", "push", "origin", "HEAD:main", cwd=work, timeout=120)
        took.append(time.monotonic() - start)
        found = re.findall(r"build (\d+) queued", out.stderr)
        assert len(found) == 1, out.stderr
        ids.append(found[0])
        if i == kill_after:
            old = cluster.master_port()
            cluster.kill_master()
            assert cluster.master_port() != old or True  # promotion is checked below
    return ids, took


def test_builds_survive_killing_the_master(srv, cluster):
    from buildqueue import logs, records, rqconn

    before = cluster.master_port()
    ids, took = push_builds(srv, cluster, 20, kill_after=5)
    assert cluster.master_port() != before  # the sentinels promoted the replica
    assert len(set(ids)) == 20
    r = rqconn.connect(cluster.url)
    deadline = time.monotonic() + 180
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for build_id in sorted(pending):
            if records.get(r, build_id).status not in ("queued", "running"):
                pending.discard(build_id)
        time.sleep(0.2)
    assert not pending, f"not ended: {sorted(pending)}"
    statuses = {build_id: records.get(r, build_id).status for build_id in ids}
    assert set(statuses.values()) == {"passed"}, statuses
    for build_id in ids:
        lines = [e["l"] for e in logs.entries(r, build_id) if "l" in e]
        body = [line for line in lines if line.startswith("line ")]
        # every line once, in order: nothing lost, nothing run twice
        assert body == [f"line {n} of {build_id}" for n in range(1, LINES + 1)], (build_id, lines)
    print(f"push durations: median {sorted(took)[len(took) // 2]:.2f} s, the one after the "
          f"kill {took[6]:.2f} s (failover as a push sees it), max {max(took):.2f} s")
