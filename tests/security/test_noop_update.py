"""Attack 1 (#11): ref rules bypassed through a hand-made no-op update.

mallory may push dev/* only. git never sends `X X refs/heads/main`, but receive-pack takes it
from anyone: the server used to answer `ok` without checking anything, audit it as `updated`,
then build X as refs/heads/main and deploy it - the live site served mallory's commit while
main never moved. Sent here as raw protocol bytes over the real ssh client.
"""

from __future__ import annotations

import pytest

from tests.support.rawpush import ZERO, empty_pack, make_pack, raw_push
from tests.support.sitekit import (
    builds_of,
    get,
    rev,
    site_commit,
    site_server,
    stop_site_server,
)

pytestmark = pytest.mark.timeout(240)

CONF = """repo web
    RW+ = alice
    RW+ dev/ = mallory
    option build.enable = 1
    option deploy.site = www
    option deploy.port = 127.0.0.1:{live}
    option deploy.preview-port = {preview}
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = site_server(tmp_path_factory.mktemp("noop-srv"), CONF)
    try:
        work = server.clone("alice", "web")
        site_commit(server, "alice", work, "alice v1")
        push = server.git("alice", "push", "origin", "HEAD:main", cwd=work, timeout=180)
        assert "Enable: blue" in push.stderr, push.stderr
        assert get(server.ports["live"]) == (200, "alice v1\n")
        yield server
    finally:
        stop_site_server(server)


def _mallory_commit(srv, text: str) -> tuple[str, bytes, str]:
    work = srv.clone("mallory", "web")
    main = rev(srv, "web", "refs/heads/main")
    sha = site_commit(srv, "mallory", work, text)
    return sha, make_pack(work, srv.client_env("mallory"), [sha], [main]), main


def test_noop_update_of_a_forbidden_ref_is_checked_and_deploys_nothing(srv):
    sha, pack, main = _mallory_commit(srv, "defaced by mallory")
    before_audit = len(srv.audit_lines())

    res = raw_push(srv, "mallory", "web", [(sha, sha, "refs/heads/main")], pack)

    assert res.report[:1] == ["unpack ok"], res
    status = res.status("refs/heads/main")
    assert status is not None and status.startswith("ng refs/heads/main"), res
    assert "W refs/heads/main web mallory DENIED" in status, status
    assert rev(srv, "web", "refs/heads/main") == main
    assert not [b for b in builds_of(srv, "web") if b["new"] == sha], builds_of(srv, "web")
    assert get(srv.ports["live"]) == (200, "alice v1\n")
    new_audit = srv.audit_lines()[before_audit:]
    assert not [a for a in new_audit if a.get("result") == "updated"], new_audit
    assert [a for a in new_audit if a.get("ref") == "refs/heads/main" and a.get("result") == "rejected"]


def test_stale_noop_from_a_writer_moves_nothing_and_builds_nothing(srv):
    """alice may write main, but `X X main` with main elsewhere is no update: the CAS compares
    with main's value now and refuses; nothing is built or deployed."""
    work = srv.clone("alice", "web")
    main = rev(srv, "web", "refs/heads/main")
    sha = site_commit(srv, "alice", work, "alice never pushed this")
    pack = make_pack(work, srv.client_env("alice"), [sha], [main])

    res = raw_push(srv, "alice", "web", [(sha, sha, "refs/heads/main")], pack)

    status = res.status("refs/heads/main")
    assert status is not None and status.startswith("ng refs/heads/main"), res
    assert rev(srv, "web", "refs/heads/main") == main
    assert not [b for b in builds_of(srv, "web") if b["new"] == sha]
    assert get(srv.ports["live"]) == (200, "alice v1\n")


def test_true_noop_is_ok_and_triggers_nothing(srv):
    main = rev(srv, "web", "refs/heads/main")
    builds = len(builds_of(srv, "web"))
    before_audit = len(srv.audit_lines())

    res = raw_push(srv, "alice", "web", [(main, main, "refs/heads/main")], empty_pack(),
                   caps="report-status")

    assert res.status("refs/heads/main") == "ok refs/heads/main", res
    assert rev(srv, "web", "refs/heads/main") == main
    assert len(builds_of(srv, "web")) == builds
    assert not [a for a in srv.audit_lines()[before_audit:] if a.get("op") == "push"]
    # deleting a ref that does not exist is a no-op too; it must never delete anything
    res = raw_push(srv, "mallory", "web", [(ZERO, ZERO, "refs/heads/main")], b"", caps="report-status")
    assert res.status("refs/heads/main") is not None and rev(srv, "web", "refs/heads/main") == main, res
