"""Attack 7 (#11): builds ran for every repo whose commit had `.gitserve/build`.

After `gitserve init --from-gitolite`, Gitolite's default `testing` repo (`RW+ = @all`) ran
any user's script on the server. Builds are now off unless the repo says `option
build.enable = 1` (SPEC §6), and gitserve's own options are validated like conf syntax, so
a typo (`build.enabled`, `build.mode = asnyc`) is refused instead of silently doing
something else.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.server import ADMIN, GitServer
from tests.support.tools import gitserve_cmd, require_tool, subprocess_env
from tests.support.sitekit import builds_of, site_commit

pytestmark = pytest.mark.timeout(240)

GITOLITE_DEFAULT_CONF = """repo gitolite-admin
    RW+     =   admin

repo testing
    RW+     =   @all
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A server made the way a Gitolite user moves over: init --from-gitolite, then serve."""
    for tool in ("git", "ssh", "ssh-keygen"):
        require_tool(tool)
    tmp = tmp_path_factory.mktemp("from-gitolite")
    server = GitServer(home=tmp / "home", tmp=tmp)
    checkout = tmp / "gitolite-admin"
    (checkout / "conf").mkdir(parents=True)
    (checkout / "keydir").mkdir()
    (checkout / "conf" / "gitolite.conf").write_text(GITOLITE_DEFAULT_CONF)
    for user in (ADMIN, "mallory"):
        key = server.keygen(user)
        (checkout / "keydir" / f"{user}.pub").write_text(Path(f"{key}.pub").read_text())
        server.keys[user] = key
    server.admin_cli("init", "--from-gitolite", str(checkout))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_gitolite_testing_repo_runs_nobodys_script(srv):
    work = srv.clone("mallory", "testing")
    marker = srv.tmp / "mallory-was-here"
    site_commit(srv, "mallory", work, "x", extra={
        ".gitserve/build": f"#!/bin/sh\necho MALLORY-CODE-RAN; id; ls ~/.ssh; touch {marker}\n"})
    push = srv.git("mallory", "push", "origin", "HEAD:main", cwd=work, timeout=120)
    assert "MALLORY-CODE-RAN" not in push.stderr, push.stderr
    assert "build" not in push.stderr, push.stderr
    assert builds_of(srv, "testing") == []
    assert not marker.exists()


def _admin_push(srv: GitServer, conf: str, files: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    work = srv.clone(ADMIN, "gitolite-admin")
    for name, text in {"conf/gitolite.conf": conf, **(files or {})}.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    srv.git(ADMIN, "add", "-A", cwd=work)
    srv.git(ADMIN, "commit", "-q", "-m", "conf", cwd=work)
    # the admin repo's own branch (what its HEAD names: master as in Gitolite, or main)
    branch = srv.git(ADMIN, "symbolic-ref", "--short", "HEAD", cwd=work).stdout.strip()
    return srv.git(ADMIN, "push", "origin", f"HEAD:{branch}", cwd=work, check=False)


BAD_OPTIONS = [
    ("option build.mode = asnyc", "option build.mode = 'asnyc': must be one of sync, async, gate"),
    ("option deploy.site = my site", "option deploy.site = 'my site'"),
    ("option build.enabled = 1", "unknown gitserve option 'build.enabled'"),
    ("option build.timeout = ten", "option build.timeout = 'ten'"),
    ("option build.timeout = 0", "option build.timeout = '0'"),
    ("option deploy.sitename = www", "unknown gitserve option 'deploy.sitename'"),
    ("option notify.webhoook = https://example.com/", "unknown gitserve option 'notify.webhoook'"),
    ("option hook.post-receive = no-such-hook",
     "option hook.post-receive = 'no-such-hook': no executable hook 'no-such-hook' in HOME/hooks"),
    ("option hook.post-receive.x = ../../bin/sh", "option hook.post-receive.x = '../../bin/sh': invalid hook name"),
    ("option deploy.ref = refs/heads/ma..in", "option deploy.ref"),
]


@pytest.mark.parametrize("line,message", BAD_OPTIONS)
def test_admin_push_refuses_bad_gitserve_options(srv, line, message):
    tip = srv.git(ADMIN, "ls-remote", srv.url("gitolite-admin")).stdout
    conf = GITOLITE_DEFAULT_CONF + f"    {line}\n"
    r = _admin_push(srv, conf)
    assert r.returncode != 0, r.stderr
    assert f"conf/gitolite.conf:6: {message}" in r.stderr, r.stderr
    assert srv.git(ADMIN, "ls-remote", srv.url("gitolite-admin")).stdout == tip
    # `admin check --conf` says the same, file:line, exit 1
    conf_file = srv.tmp / "try.conf"
    conf_file.write_text(conf)
    check = subprocess.run(gitserve_cmd("--home", str(srv.home), "admin", "check", "--conf", str(conf_file)),
                           capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert check.returncode == 1 and message in check.stderr, check.stderr
    assert len(check.stderr.strip().splitlines()) == 1 and "Traceback" not in check.stderr
    # and set-conf refuses it without a commit
    set_conf = subprocess.run(gitserve_cmd("--home", str(srv.home), "admin", "set-conf", str(conf_file)),
                              capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert set_conf.returncode != 0 and message in set_conf.stderr, set_conf.stderr


def test_valid_and_foreign_options_are_accepted(srv):
    hooks = srv.home / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "announce").write_text("#!/bin/sh\necho announced\n")
    (hooks / "announce").chmod(0o755)
    conf = GITOLITE_DEFAULT_CONF + """    option deny-rules = 1
    option writer-is-owner = 1
    option mirror.master = x
    option somebody.elses = anything at all
    option build.enable = 1
    option build.mode = async
    option build.timeout = 60
    option build.refs = refs/heads/main refs/tags/v[0-9]
    option deploy.site = www.example
    option deploy.ref = release
    option deploy.port = 127.0.0.1:8080
    option deploy.preview-port = 8081
    option deploy.check = /health
    option notify.webhook = https://hooks.example.com/x
    option hook.post-receive = announce
"""
    r = _admin_push(srv, conf)
    assert r.returncode == 0, r.stderr
    check = srv.admin_cli("admin", "check", check=False)
    assert check.returncode == 0, check.stderr
    # a hook that exists is fine; removing it makes the conf fail `admin check`, file:line
    (hooks / "announce").unlink()
    check = srv.admin_cli("admin", "check", check=False)
    assert check.returncode == 1 and "conf/gitolite.conf:20: " in check.stderr, check.stderr
