"""A plain Redis (no Sentinel) stopped for longer than a push waits for it (issue 22; the wait
is `[redis] outage_wait`, shortened here to outage.WAIT so the outage is outage.OUTAGE s):
each build mode's push is answered in bounded time with one clear line, no traceback; the
sync and async builds are kept on disk and run exactly once when Redis is back, the gate
rejects its ref with the reason. A short outage, within the wait, is simply waited out."""

from __future__ import annotations

import re

import pytest

from tests.support import outage
from tests.support.pushes import remote, timed_push
from tests.support.redisproc import RedisProc
from tests.support.sentinel import start_workers, stop_workers, wait_registered
from tests.support.server import make_server

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outage")
    redis = RedisProc(tmp / "redis").start()
    srv = workers = None
    try:
        srv = make_server(tmp / "srv", conf=outage.CONF, users=("alice",),
                          settings={"redis": {"url": redis.url, **outage.SETTINGS}})
        workers = start_workers(srv.home, 1)
        wait_registered(redis.url, 1)
        yield redis, srv
    finally:
        if workers:
            stop_workers(workers)
        if srv is not None:
            srv.stop()
        redis.stop()


def test_pushes_through_an_outage_longer_than_the_wait(setup):
    redis, srv = setup
    work = outage.works(srv)
    results = outage.push_through_outage(srv, work, down=redis.kill, up=redis.start)
    outage.check_answers(results, bound=outage.WAIT + 10)
    outage.check_ran_once(redis.url, srv, work)
    took = {repo: round(r[2], 1) for repo, r in results.items()}
    print(f"\n{outage.OUTAGE:g} s outage ({outage.WAIT:g} s wait), seconds to answer: {took}")


def test_a_restart_within_the_wait_is_waited_out(setup):
    """Redis back after 3 s (well within the wait): the sync push waits, then its build runs
    and streams as usual."""
    redis, srv = setup
    work = srv.clone("alice", "s")
    (work / "more").write_text("x\n")
    srv.git("alice", "add", "more", cwd=work)
    srv.git("alice", "commit", "-qm", "more", cwd=work)
    import threading

    redis.kill()
    timer = threading.Timer(3.0, redis.start)
    assert 3.0 + 3.0 < outage.WAIT  # the restart and the retry's last backoff fit in the wait
    timer.start()
    try:
        code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main", timeout=90)
    finally:
        timer.join()
    said = remote(lines)
    assert code == 0, lines
    assert [m for m in said if m.startswith("line ")] == ["line 1 of s", "line 2 of s", "line 3 of s"]
    assert re.match(r"build \d+ passed in ", said[-1]), said
    assert not [m for m in said if "could not be queued" in m], said
