"""`builds retry` of a build record rewritten in Redis (redteam2).

`builds retry ID` rebuilds the record's commit for the record's ref (W on that ref needed),
and a retried build of the deploy ref goes live. The record lives in Redis: mallory, who may
push only dev/ but holds the Redis password, set the `new` of alice's last main build to the
commit of her dev/ branch; when alice retried it, mallory's commit was built as main (and,
on a site repo, deployed). Now the server signs a record's repo, ref, commits and options
when it queues the build, and a retry (like a notification) takes only a record it signed.
"""

from __future__ import annotations

import re

import pytest

from tests.support.server import make_server

pytestmark = pytest.mark.timeout(240)

CONF = """
repo gitolite-admin
    RW+ = admin
repo app
    RW+ = alice
    RW+ dev/ = mallory
    option build.enable = 1
    option build.mode = async
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("retry-forge"), conf=CONF,
                         users=("alice", "mallory"))
    try:
        yield server
    finally:
        server.stop()


def commit_and_push(srv, user: str, text: str, ref: str) -> str:
    work = srv.clone(user, "app")
    script = work / ".gitserve" / "build"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!/bin/sh\necho '{text}'\n")
    script.chmod(0o755)
    srv.git(user, "add", "-A", cwd=work)
    srv.git(user, "commit", "-qm", text, cwd=work)
    srv.git(user, "push", "-q", "origin", f"HEAD:{ref}", cwd=work, timeout=120)
    return srv.git(user, "rev-parse", "HEAD", cwd=work).stdout.strip()


def test_a_retry_takes_no_commit_redis_swapped_in(srv):
    import redis

    from buildqueue import keys, records

    commit_and_push(srv, "alice", "alice main", "refs/heads/main")
    theirs = commit_and_push(srv, "mallory", "mallory dev", "refs/heads/dev/x")
    r = redis.Redis(unix_socket_path=str(srv.home / "run" / "redis.sock"))
    try:
        main_build = next(i for i in records.list_ids(r, "app")
                          if records.get(r, i).ref == "refs/heads/main")
        r.hset(keys.build(main_build), "new", theirs)  # mallory, with the Redis password
        out = srv.ssh("alice", "builds", "retry", main_build)
        queued = re.findall(r"build (\d+) queued", out.stdout + out.stderr)
        retried = [records.get(r, i) for i in queued]
    finally:
        r.close()
    assert not [b for b in retried if b.new == theirs and b.ref == "refs/heads/main"], out
    assert out.returncode != 0 and "not the one this server" in out.stderr, out
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
