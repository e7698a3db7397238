"""Who decides what goes live (#11 attacks 5, 6 and the deploy.ref half of 7).

- Any branch that built used to deploy: mallory's dev/ branch replaced the live site.
  Only builds of `deploy.ref` (default: the repo's default branch) go live now.
- `deploy rollback` needed only W somewhere in the repo: mallory (W on dev/* only) rolled
  the site back. It needs W on the site's deploy.ref now.
- `builds retry` needed W somewhere and reused the options stored with the old build: after
  the admin removed the deploy.* options a retry still deployed and ran deploy.post. It needs
  W on the build's ref and obeys the conf in force now (builds switched off: refused).
All over the real ssh client, against a server with builds and the embedded nginx.
"""

from __future__ import annotations

import re

import pytest

from tests.support.sitekit import builds_of, get, rev, site_commit, site_server, stop_site_server

pytestmark = pytest.mark.timeout(300)

REPO = """repo web
    RW+ = alice
    RW+ dev/ = mallory
"""
BUILDS = "    option build.enable = 1\n"
DEPLOY = """    option deploy.site = www
    option deploy.port = 127.0.0.1:{live}
    option deploy.preview-port = {preview}
    option deploy.post = .gitserve/post
"""
POST = "#!/bin/sh\necho \"post ran on $LIVE_SIDE\"\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = site_server(tmp_path_factory.mktemp("rights-srv"), REPO + BUILDS + DEPLOY)
    try:
        yield server
    finally:
        stop_site_server(server)


def push(srv, user: str, text: str, ref: str) -> str:
    work = srv.clone(user, "web")
    site_commit(srv, user, work, text, extra={".gitserve/post": POST})
    r = srv.git(user, "push", "origin", f"HEAD:{ref}", cwd=work, timeout=180)
    return r.stderr


def build_id_of(srv, ref: str, text_sha: str) -> str:
    return next(b["id"] for b in builds_of(srv, "web") if b["ref"] == ref and b["new"] == text_sha)


def test_a_feature_branch_builds_but_does_not_go_live(srv):
    out = push(srv, "alice", "alice v1", "main")
    assert "Enable: blue" in out and "post ran on blue" in out, out
    assert get(srv.ports["live"]) == (200, "alice v1\n")

    out = push(srv, "mallory", "mallory was here", "dev/x")
    assert "building mallory was here" in out and re.search(r"build \d+ passed", out), out
    assert "deploy www" not in out and "Enable:" not in out and "post ran" not in out, out
    assert get(srv.ports["live"]) == (200, "alice v1\n")


def test_rollback_needs_write_on_the_deploy_ref(srv):
    out = push(srv, "alice", "alice v2", "main")
    assert "Enable: green" in out, out
    r = srv.ssh("mallory", "deploy", "rollback", "www")
    assert r.returncode != 0 and "W refs/heads/main web mallory DENIED by fallthru" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and get(srv.ports["live"]) == (200, "alice v2\n")
    # mallory may still look
    assert srv.ssh("mallory", "deploy", "status", "www").returncode == 0
    r = srv.ssh("alice", "deploy", "rollback", "www")
    assert r.returncode == 0 and "Enable: blue" in r.stdout, r.stderr
    assert get(srv.ports["live"]) == (200, "alice v1\n")


def test_retry_needs_write_on_the_builds_ref(srv):
    main = rev(srv, "web", "refs/heads/main")
    build_id = build_id_of(srv, "refs/heads/main", main)
    count = len(builds_of(srv, "web"))
    r = srv.ssh("mallory", "builds", "retry", build_id)
    needed = f"W access to refs/heads/main of web needed to retry build {build_id}"
    assert r.returncode != 0 and needed in r.stderr, r.stderr
    assert len(builds_of(srv, "web")) == count and get(srv.ports["live"]) == (200, "alice v1\n")
    # a build of mallory's own branch is hers to retry (and it still does not deploy)
    dev = build_id_of(srv, "refs/heads/dev/x", rev(srv, "web", "refs/heads/dev/x"))
    r = srv.ssh("mallory", "builds", "retry", dev)
    assert r.returncode == 0 and "queued" in r.stdout, r.stderr
    new_id = r.stdout.split()[1]
    log = srv.ssh("mallory", "builds", "log", new_id, "--follow", timeout=120)
    assert re.search(rf"build {new_id} passed", log.stdout) and "deploy www" not in log.stdout, log.stdout
    assert get(srv.ports["live"]) == (200, "alice v1\n")


def test_retry_obeys_the_conf_in_force_now(srv):
    main = rev(srv, "web", "refs/heads/main")
    build_id = build_id_of(srv, "refs/heads/main", main)
    live_before = srv.admin_cli("deploy", "status", "www", "--json").stdout
    # the admin takes the site off this repo: a retry builds, but deploys nothing
    srv.set_conf("repo gitolite-admin\n    RW+ = admin\n" + REPO + BUILDS)
    r = srv.ssh("alice", "builds", "retry", build_id)
    assert r.returncode == 0, r.stderr
    new_id = r.stdout.split()[1]
    log = srv.ssh("alice", "builds", "log", new_id, "--follow", timeout=120)
    assert re.search(rf"build {new_id} passed", log.stdout), log.stdout
    assert "deploy www" not in log.stdout and "post ran" not in log.stdout, log.stdout
    assert srv.admin_cli("deploy", "status", "www", "--json").stdout == live_before
    # builds switched off: retry is refused, over ssh and with the CLI alike
    srv.set_conf("repo gitolite-admin\n    RW+ = admin\n" + REPO)
    count = len(builds_of(srv, "web"))
    r = srv.ssh("alice", "builds", "retry", build_id)
    assert r.returncode != 0 and "builds are off for web" in r.stderr, r.stderr
    cli = srv.admin_cli("builds", "retry", build_id, check=False)
    assert cli.returncode != 0 and "builds are off for web" in cli.stderr, cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1
    assert len(builds_of(srv, "web")) == count
