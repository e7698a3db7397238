"""Moving HEAD to get past the LFS lock rules (redteam2).

A new lock needs W on the default branch (the branch HEAD names: a lock holds every ref),
and breaking a lock made without a ref needs RW+ on that branch. With `symbolic-ref`
enabled, dave, who may push only `personal/dave/`, first pointed HEAD at his own branch
(symbolic-ref asked W on the new target only): HEAD's branch was now one he may write, so
he locked the team's file and alice's push to main changing it was refused (and every new
clone checked out dave's branch). Now moving HEAD also needs W on the branch it names now.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.httpkit import get, make_http_server, token

pytestmark = pytest.mark.timeout(180)

CONF = """
repo gitolite-admin
    RW+ = admin
repo art
    RW+ = alice
    RW+ personal/USER/ = dave
"""
MEDIA = {"Content-Type": "application/vnd.git-lfs+json", "Accept": "application/vnd.git-lfs+json"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = make_http_server(tmp_path_factory.mktemp("lfs-head"), conf=CONF,
                              users=("alice", "dave"),
                              settings={"server": {"commands": "symbolic-ref"}})
    try:
        yield server
    finally:
        server.stop()


def lock(srv, user: str, path: str, ref: str) -> tuple[int, dict]:
    raw = f"{user}:{token(srv, user, 'head-' + user)}".encode()
    headers = {**MEDIA, "Authorization": "Basic " + base64.b64encode(raw).decode()}
    body = json.dumps({"path": path, "ref": {"name": ref}}).encode()
    status, _, answer = get(f"{srv.http_base}/art.git/info/lfs/locks", headers, body)
    return status, json.loads(answer or b"{}")


def test_head_cannot_be_moved_to_get_past_the_lock_rule(srv, tmp_path):
    alice = tmp_path / "alice"
    srv.git("alice", "clone", "-q", srv.url("art"), str(alice), check=False)
    (alice / "hero.psd").write_text("v1\n")
    srv.git("alice", "add", ".", cwd=alice)
    srv.git("alice", "commit", "-qm", "hero", cwd=alice)
    srv.git("alice", "push", "-q", "origin", "HEAD:refs/heads/main", cwd=alice)
    dave = tmp_path / "dave"
    srv.git("dave", "clone", "-q", srv.url("art"), str(dave))
    srv.git("dave", "push", "-q", "origin", "HEAD:refs/heads/personal/dave/x", cwd=dave)

    r = srv.ssh("dave", "symbolic-ref", "art", "HEAD", "refs/heads/personal/dave/x")
    head = (srv.repo_path("art") / "HEAD").read_text().strip()
    status, body = lock(srv, "dave", "hero.psd", "refs/heads/personal/dave/x")
    assert head == "ref: refs/heads/main", (head, status, body)
    assert r.returncode != 0 and "W refs/heads/main art dave DENIED" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert status == 403 and "locking needs W on refs/heads/main" in body["message"], body

    # alice's work on main goes on, and she may still move HEAD (W on both branches)
    (alice / "hero.psd").write_text("v2\n")
    srv.git("alice", "commit", "-qam", "hero v2", cwd=alice)
    srv.git("alice", "push", "-q", "origin", "HEAD:refs/heads/main", cwd=alice)
    assert srv.ssh("alice", "symbolic-ref", "art", "HEAD", "refs/heads/personal/dave/x").returncode == 0
    assert srv.ssh("alice", "symbolic-ref", "art", "HEAD", "refs/heads/main").returncode == 0
