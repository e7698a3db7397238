"""Issue 21 findings 1 and 3: HEAD and symbolic refs as a way past the ref rules.

1. With `symbolic-ref` enabled it checked only W somewhere in the repo and took any name and
   target: a `RW wip/` user on gitolite-admin pointed HEAD at her wip branch (full admin on
   the next connection), a `dev/` writer pointed a site's HEAD (and so its deploy branch) at
   her branch, and `symbolic-ref web refs/heads/dev/alias refs/heads/main` plus a push to
   dev/alias moved main (receive followed the symref; check #2 and the audit named the alias).
3. On a new site repo a `dev/` writer pushed first: the first-push HEAD rule pointed HEAD at
   her branch, her page went live, and alice's main built but never deployed.

Each failed before the fix, over the real git and ssh clients against a server with builds
and the embedded nginx.
"""

from __future__ import annotations

import re

import pytest

from tests.support.rawpush import make_pack, raw_push
from tests.support.sitekit import get, rev, site_commit, site_server, stop_site_server
from tests.support.tools import free_port

pytestmark = pytest.mark.timeout(300)

FRESH = {"live": free_port(), "preview": free_port()}
CONF = """repo gitolite-admin
    RW wip/ = mallory
repo web
    RW+ = alice
    RW+ dev/ = mallory
    option build.enable = 1
    option deploy.site = www
    option deploy.port = 127.0.0.1:{live}
    option deploy.preview-port = {preview}
repo fresh
    RW+ = alice
    RW+ dev/ = mallory
    option build.enable = 1
    option deploy.site = fresh
""" + f"""    option deploy.port = 127.0.0.1:{FRESH['live']}
    option deploy.preview-port = {FRESH['preview']}
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = site_server(tmp_path_factory.mktemp("head-srv"), CONF,
                         settings={"server": {"commands": "symbolic-ref"}})
    try:
        yield server
    finally:
        stop_site_server(server)


def push(srv, user: str, repo: str, text: str, ref: str) -> str:
    work = srv.clone(user, repo)
    site_commit(srv, user, work, text)
    return srv.git(user, "push", "origin", f"HEAD:{ref}", cwd=work, timeout=180, check=False).stderr


def head_of(srv, repo: str) -> str:
    return (srv.repo_path(repo) / "HEAD").read_text().strip()


# --- 3: the first push does not pick what deploys --------------------------------------------
def test_first_push_by_a_dev_writer_does_not_pick_the_deploy_branch(srv):
    out = push(srv, "mallory", "fresh", "mallory first", "dev/x")
    assert re.search(r"build \d+ passed", out), out
    assert "Enable:" not in out and "deploy fresh" not in out, out
    assert get(FRESH["live"])[1] != "mallory first\n"
    out = push(srv, "alice", "fresh", "alice main", "main")
    assert "Enable: blue" in out, out
    assert get(FRESH["live"]) == (200, "alice main\n")


# --- 1: symbolic-ref ---------------------------------------------------------------------------
def test_symbolic_ref_sets_head_only_to_a_branch_the_user_may_write(srv):
    out = push(srv, "alice", "web", "alice v1", "main")
    assert "Enable: blue" in out, out
    main = rev(srv, "web", "refs/heads/main")
    r = srv.ssh("mallory", "symbolic-ref", "web", "refs/heads/dev/alias", "refs/heads/main")
    assert r.returncode != 0 and "only HEAD may be set" in r.stderr, r.stderr
    assert not (srv.repo_path("web") / "refs/heads/dev/alias").exists()
    r = srv.ssh("mallory", "symbolic-ref", "web", "HEAD", "refs/heads/master")
    assert r.returncode != 0 and "W refs/heads/master web mallory DENIED" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    # a branch she may write, but HEAD names main, which she may not: refused (redteam2:
    # moving the default branch away needs W on it; tests/security/test_lfs_head_move.py)
    r = srv.ssh("mallory", "symbolic-ref", "web", "HEAD", "refs/heads/dev/m")
    assert r.returncode != 0 and "W refs/heads/main web mallory DENIED" in r.stderr, r.stderr
    assert head_of(srv, "web") == "ref: refs/heads/main"
    # alice moves it there (W on both) -- and still nothing of mallory's deploys
    assert srv.ssh("alice", "symbolic-ref", "web", "HEAD", "refs/heads/dev/m").returncode == 0
    assert head_of(srv, "web") == "ref: refs/heads/dev/m"
    out = push(srv, "mallory", "web", "mallory via HEAD", "dev/m")
    assert re.search(r"build \d+ passed", out) and "Enable:" not in out, out
    assert get(srv.ports["live"]) == (200, "alice v1\n")
    assert rev(srv, "web", "refs/heads/main") == main
    assert srv.ssh("alice", "symbolic-ref", "web", "HEAD", "refs/heads/main").returncode == 0


def test_a_push_never_follows_a_symbolic_ref(srv):
    main = rev(srv, "web", "refs/heads/main")
    # a symref left in a repo (an import, the old symbolic-ref): refs/heads/dev/alias -> main
    alias = srv.repo_path("web") / "refs/heads/dev/alias"
    alias.parent.mkdir(parents=True, exist_ok=True)
    alias.write_text("ref: refs/heads/main\n")
    try:
        work = srv.clone("mallory", "web")
        new = site_commit(srv, "mallory", work, "defaced")
        # raw bytes (this git client stalls on a symref it did not expect; an attacker's does not)
        pack = make_pack(work, srv.client_env("mallory"), [new], [main])
        res = raw_push(srv, "mallory", "web", [(main, new, "refs/heads/dev/alias")], pack)
        status = res.status("refs/heads/dev/alias") or ""
        assert status.startswith("ng ") and "refusing to update symbolic ref" in status, res
        assert rev(srv, "web", "refs/heads/main") == main
        assert alias.read_text() == "ref: refs/heads/main\n"
        assert get(srv.ports["live"]) == (200, "alice v1\n")
    finally:
        alias.unlink()


def test_the_admin_head_is_never_followed(srv):
    work = srv.clone("mallory", "gitolite-admin")
    conf = work / "conf" / "gitolite.conf"
    conf.write_text(conf.read_text() + "\nrepo gitolite-admin\n    RW+ = mallory\nrepo web\n    RW+ = mallory\n")
    srv.git("mallory", "commit", "-q", "-am", "take over", cwd=work)
    assert srv.git("mallory", "push", "origin", "HEAD:refs/heads/wip/x", cwd=work, check=False).returncode == 0
    r = srv.ssh("mallory", "symbolic-ref", "gitolite-admin", "HEAD", "refs/heads/wip/x")
    assert r.returncode != 0 and "HEAD of gitolite-admin is always master" in r.stderr, r.stderr
    assert head_of(srv, "gitolite-admin") == "ref: refs/heads/master"
    # HEAD moved behind gitserve's back: never applied (the admin state is master's tip)
    head = srv.repo_path("gitolite-admin") / "HEAD"
    head.write_text("ref: refs/heads/wip/x\n")
    try:
        # the wip conf would give mallory `RW+ = mallory` on web: main stays out of her reach
        web = srv.clone("mallory", "web")
        site_commit(srv, "mallory", web, "admin via HEAD")
        res = srv.git("mallory", "push", "origin", "HEAD:refs/heads/main", cwd=web, check=False)
        assert res.returncode != 0 and "DENIED" in res.stderr, res.stderr
        res = srv.git("mallory", "push", "origin", "HEAD:refs/heads/master", cwd=work, check=False)
        assert res.returncode != 0, res.stderr
    finally:
        head.write_text("ref: refs/heads/master\n")
