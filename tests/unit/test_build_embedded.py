"""Embedded Redis (AOF under HOME): queued builds survive a restart; `gitserve worker` runs them."""

from __future__ import annotations

import subprocess

import pytest

from buildqueue import embedded, enqueue, logs, records, rqconn
from gitserve.options import RepoOptions
from gitserve.settings import Settings
from tests.support.builds import commit_to, make_bare, set_ref
from tests.support.tools import gitserve_cmd, subprocess_env

pytestmark = pytest.mark.timeout(60)


def test_queued_build_survives_redis_restart(tmp_path):
    settings = Settings(home=tmp_path / "home")
    (settings.home).mkdir()
    bare = make_bare(settings.repo_path("persist"))
    sha = commit_to(bare, {".gitserve/build": "#!/bin/sh\necho built $GITSERVE_NEWREV\n"})
    set_ref(bare, "refs/heads/main", sha)
    srv = embedded.EmbeddedRedis(settings.redis_socket, settings.home / "redis").start()
    try:
        r = rqconn.connect(settings.effective_redis_url)
        build = enqueue.enqueue(settings, r, "persist", bare, "refs/heads/main", "0" * 40, sha,
                                "alice", RepoOptions.parse({}), "async")
        with pytest.raises(embedded.EmbeddedRedisError, match="already runs"):
            embedded.EmbeddedRedis(settings.redis_socket, settings.home / "redis").start()
    finally:
        srv.stop()
    assert (settings.home / "redis").is_dir()
    srv = embedded.EmbeddedRedis(settings.redis_socket, settings.home / "redis").start()
    try:
        r = rqconn.connect(settings.effective_redis_url)
        assert records.get(r, build.id).status == "queued"
        res = subprocess.run(gitserve_cmd("--home", str(settings.home), "worker", "--burst"),
                             env=subprocess_env(), capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        final = records.get(r, build.id)
        assert final.status == "passed", final.reason
        assert [e["l"] for e in logs.entries(r, build.id) if "l" in e] == [f"built {sha}"]
    finally:
        srv.stop()


def test_services_follow_redis_url(tmp_path):
    settings = Settings(home=tmp_path)
    kinds = [type(s).__name__ for s in embedded.services(settings)]
    assert kinds == ["EmbeddedRedisService", "LocalWorkersService"]
    settings.builds.workers = 0
    assert [type(s).__name__ for s in embedded.services(settings)] == ["EmbeddedRedisService"]
    settings.redis.url = "redis://127.0.0.1:1/0"
    assert embedded.services(settings) == []


def test_worker_cli_reports_unreachable_redis(tmp_path):
    res = subprocess.run(gitserve_cmd("--home", str(tmp_path), "worker", "--url", f"unix://{tmp_path}/no.sock"),
                         env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "Redis unreachable" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_killed_notify_worker_leaves_no_scheduler(tmp_path):
    """rq's scheduler is a forked child of the notify worker with the worker's own command line;
    a kill -9 of the worker (what serve's parent-death signal sends) must take it along, or it
    keeps retrying the Redis for rqconn's ~30 s (the 3.11.2 run of test_deploy caught one)."""
    import os
    import signal
    import time

    from gitserve import procscan

    settings = Settings(home=tmp_path / "home")
    settings.home.mkdir()
    srv = embedded.EmbeddedRedis(settings.redis_socket, settings.home / "redis").start()
    worker = subprocess.Popen(gitserve_cmd("--home", str(settings.home), "worker", "notify"),
                              env=subprocess_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        children = procscan.tree(worker.pid)[1:]
        while not children:  # the scheduler: forked once the worker holds the scheduler lock
            assert time.monotonic() < deadline and worker.poll() is None, "no scheduler started"
            time.sleep(0.05)
            children = procscan.tree(worker.pid)[1:]
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        deadline = time.monotonic() + 2
        while any(procscan.alive(p) for p in children):
            assert time.monotonic() < deadline, [procscan.cmdline(p) for p in children]
            time.sleep(0.05)
    finally:
        for p in procscan.tree(worker.pid):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        srv.stop()
