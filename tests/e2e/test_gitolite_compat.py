"""Gitolite's user-visible output and commands over the real ssh client (issue #12 part A):
hook-declined wording, Initialized-empty lines, info options, perms -c / batch, writable,
the optional D/create/fork/symbolic-ref, VREF programs, config/description/daemon/gitweb."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

CONF = """
repo gitolite-admin
    RW+ = admin
repo plain
    RW+ = alice
    RW  = bob
    R   = carol daemon
    desc = "the plain repo"
    config hooks.mailinglist = dev@example.com
    config core.hooksPath = /tmp/evil
    config core.sshCommand = touch /tmp/pwned
    config foo.bar = baz
repo web
    RW+ = alice
    R   = gitweb
repo vr
    RW+                     = alice
    -   VREF/NOTXT          = alice
repo users/CREATOR/..*
    C   = @all
    RW+ = CREATOR
    RW  = WRITERS
    R   = READERS
"""

# a VREF program in Gitolite's convention: args REF OLD NEW OLDTREE NEWTREE AA VREF ARGS...;
# prints VREF/NOTXT (denied by the rule above) when the push adds a .txt file
NOTXT = """#!/bin/sh
echo "notxt checking $1 ($6) in $GL_REPO for $GL_USER"
git log --name-only --format=%n "$3" --not --all | grep -q '\\.txt$' && echo "$7 no .txt files please"
exit 0
"""


@pytest.fixture(scope="module")
def srv(gitserve_module_factory):
    server = gitserve_module_factory(
        users=("alice", "bob", "carol"), conf=CONF,
        settings={"server": {"git_config_keys": "hooks\\..* gitweb\\..* core\\..* foo.bar",
                             "commands": "D create fork symbolic-ref"}})
    vrefs = server.home / "vrefs"
    vrefs.mkdir()
    (vrefs / "NOTXT").write_text(NOTXT)
    (vrefs / "NOTXT").chmod(0o755)
    return server


def _push(srv, user: str, repo: str, files: dict[str, str], ref: str = "HEAD:master",
          force: bool = False) -> subprocess.CompletedProcess:
    work = srv.clone(user, repo)
    for name, text in files.items():
        srv.commit(user, work, name, text)
    args = ["push", *(["-f"] if force else []), "origin", ref]
    return srv.git(user, *args, cwd=work, check=False)


def test_denied_ref_says_hook_declined(srv):
    srv.git("alice", "push", "origin", "HEAD:master", cwd=_seed(srv, "plain"))
    res = _push(srv, "carol", "plain", {"c.md": "x"})
    assert res.returncode != 0
    assert "remote: FATAL: W any plain carol DENIED by fallthru" in res.stderr or \
        "DENIED" in res.stderr
    bob = srv.clone("bob", "plain")
    srv.git("bob", "commit", "-q", "--amend", "-m", "rewritten", cwd=bob)  # not a fast-forward
    rew = srv.git("bob", "push", "-f", "origin", "HEAD:master", cwd=bob, check=False)
    assert "remote: FATAL: + refs/heads/master plain bob DENIED by fallthru" in rew.stderr
    assert "remote: error: hook declined to update refs/heads/master" in rew.stderr
    assert "[remote rejected] HEAD -> master (hook declined)" in rew.stderr


def _seed(srv, repo: str) -> Path:
    work = srv.clone("alice", repo)
    srv.commit("alice", work, "README", "seed\n")
    return work


def test_wild_creation_says_initialized(srv):
    res = srv.git("alice", "ls-remote", srv.url("users/alice/new1"), check=False)
    assert res.returncode == 0
    path = srv.repo_path("users/alice/new1")
    assert f"Initialized empty Git repository in {path}/" in res.stderr


def test_info_options(srv):
    srv.git("alice", "ls-remote", srv.url("users/alice/inf"))
    out = srv.ssh("alice", "info").stdout
    assert out.startswith("hello alice, this is git@") and " running gitolite3 (gitserve " in out
    lc = srv.ssh("alice", "info", "-lc", "users").stdout.splitlines()
    assert "     C\tusers/CREATOR/..*" in lc  # patterns get no creator column
    # Gitolite pads the names (and creators) of a group of rows to one width
    assert " R W\tusers/alice/inf \talice" in lc and " R W\tusers/alice/new1\talice" in lc
    assert not any("plain" in x for x in lc)  # the pattern argument filters
    ld = srv.ssh("alice", "info", "-ld", "plain").stdout
    assert "\tplain\tthe plain repo" in ld
    doc = json.loads(srv.ssh("carol", "info", "-json").stdout)
    assert doc["GL_USER"] == "carol" and doc["gitolite_version"].startswith("v3.6.12")
    assert doc["repos"]["plain"]["perms"] == {"R": 1}
    assert doc["repos"]["users/CREATOR/..*"]["perms"] == {"C": 1}
    bad = srv.ssh("alice", "info", "-x")
    assert bad.returncode == 1 and "Usage:" in bad.stdout


def test_perms_create_and_batch(srv):
    res = srv.ssh("bob", "perms", "-c", "users/bob/p1", "+", "READERS", "carol")
    assert res.returncode == 0, res.stderr
    assert "Initialized empty Git repository in" in res.stderr
    assert srv.ssh("bob", "perms", "users/bob/p1", "-l").stdout == "READERS carol\n"
    res = srv.ssh("bob", "perms", "-c", "users/bob/p1", input="WRITERS alice\nREADERS daemon\n")
    assert res.returncode == 0, res.stderr
    assert srv.ssh("bob", "perms", "users/bob/p1", "-l").stdout == \
        "WRITERS alice\nREADERS daemon\n"
    # daemon became a reader: the repo is exported to git-daemon
    assert (srv.repo_path("users/bob/p1") / "git-daemon-export-ok").exists()
    bad = srv.ssh("bob", "perms", "-c", "users/bob/p1", input="OWNERS alice\n")
    assert bad.returncode == 1 and "Invalid role 'OWNERS'" in bad.stderr
    assert "WRITERS alice" in srv.ssh("bob", "perms", "users/bob/p1", "-l").stdout
    # not the creator: the generic error, nothing changed
    other = srv.ssh("carol", "perms", "-c", "users/bob/p1", input="READERS carol\n")
    assert other.returncode == 25 and "repo does not exist, or you are not authorised" in \
        other.stderr
    # -c on a repo nobody may create
    no = srv.ssh("carol", "perms", "-c", "plainx", "+", "READERS", "bob")
    assert no.returncode == 25 and not srv.repo_path("plainx").exists()


def test_writable(srv):
    work = _seed(srv, "web")
    srv.git("alice", "push", "origin", "HEAD:master", cwd=work)
    assert srv.ssh("bob", "writable", "@all", "off", "maint").returncode == 25  # FATAL
    assert srv.ssh("admin", "writable", "@all", "off", "back", "at", "noon").returncode == 0
    srv.commit("alice", work, "w.md", "w")
    res = srv.git("alice", "push", "origin", "HEAD:master", cwd=work, check=False)
    assert res.returncode != 0 and "FATAL: back at noon" in res.stderr
    assert srv.git("carol", "ls-remote", srv.url("plain")).returncode == 0  # reads still work
    assert srv.ssh("alice", "writable", "web", "status").returncode == 1
    assert srv.ssh("admin", "writable", "@all", "on").returncode == 0
    assert srv.ssh("alice", "writable", "web", "status").returncode == 0
    srv.git("alice", "push", "origin", "HEAD:master", cwd=work)


def test_optional_commands(srv, gitserve_factory):
    assert srv.ssh("carol", "create", "users/carol/c1").returncode == 0
    assert srv.repo_path("users/carol/c1").is_dir()
    dup = srv.ssh("carol", "create", "users/carol/c1")
    assert dup.returncode == 25 and "already exists or you are not authorised" in dup.stderr
    work = _seed(srv, "users/alice/src")
    srv.git("alice", "push", "origin", "HEAD:master", cwd=work)
    srv.ssh("alice", "perms", "users/alice/src", "+", "READERS", "carol")
    fork = srv.ssh("carol", "fork", "users/alice/src", "users/carol/copy")
    assert fork.returncode == 0 and "users/alice/src forked to users/carol/copy" in fork.stderr
    heads = srv.git("carol", "ls-remote", srv.url("users/carol/copy")).stdout
    assert "refs/heads/master" in heads
    assert srv.ssh("bob", "fork", "users/alice/src", "users/bob/x").returncode == 1
    sym = srv.ssh("carol", "symbolic-ref", "users/carol/copy", "HEAD", "refs/heads/other")
    assert sym.returncode == 0, sym.stderr
    assert srv.ssh("carol", "symbolic-ref", "users/carol/copy", "HEAD").stdout == \
        "refs/heads/other\n"
    assert srv.ssh("bob", "symbolic-ref", "users/carol/copy", "HEAD",
                   "refs/heads/x").returncode == 1
    locked = srv.ssh("carol", "D", "rm", "users/carol/copy")
    assert locked.returncode == 1 and "is locked!" in locked.stderr
    assert srv.ssh("bob", "D", "unlock", "users/carol/copy").returncode == 1
    assert srv.ssh("carol", "D", "unlock", "users/carol/copy").returncode == 0
    gone = srv.ssh("carol", "D", "rm", "users/carol/copy")
    assert gone.returncode == 0 and "is now gone!" in gone.stdout
    assert not srv.repo_path("users/carol/copy").exists()
    # a server that does not enable them: unknown commands, and help does not list them
    plain = gitserve_factory(users=("alice",), conf=CONF)
    res = plain.ssh("alice", "create", "users/alice/z")
    assert res.returncode == 25 and "unknown git/gitolite command" in res.stderr
    assert "\tcreate\n" not in plain.ssh("alice", "help").stdout
    assert "\twritable\n" in plain.ssh("alice", "help").stdout


def test_vref_program(srv):
    work = _seed(srv, "vr")
    ok = srv.git("alice", "push", "origin", "HEAD:master", cwd=work, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "remote: notxt checking refs/heads/master (W) in vr for alice" in ok.stderr
    srv.commit("alice", work, "notes.txt", "no")
    res = srv.git("alice", "push", "origin", "HEAD:master", cwd=work, check=False)
    assert res.returncode != 0
    assert "remote: FATAL: W VREF/NOTXT vr alice DENIED by VREF/NOTXT" in res.stderr
    assert "remote: no .txt files please" in res.stderr
    assert "(hook declined)" in res.stderr


def test_vref_program_failure_and_missing(srv, tmp_path):
    (srv.home / "vrefs" / "NOTXT").rename(srv.home / "vrefs" / "NOTXT.off")
    try:
        work = srv.clone("alice", "vr")
        srv.commit("alice", work, "x.md", "x")
        res = srv.git("alice", "push", "origin", "HEAD:master", cwd=work, check=False)
        assert res.returncode != 0
        assert "'VREF/NOTXT': helper program missing or unexecutable" in res.stderr
        (srv.home / "vrefs" / "NOTXT").write_text("#!/bin/sh\necho broken >&2\nexit 3\n")
        (srv.home / "vrefs" / "NOTXT").chmod(0o755)
        res = srv.git("alice", "push", "origin", "HEAD:master", cwd=work, check=False)
        assert res.returncode != 0 and "VREF/NOTXT: helper program exit status 768" in res.stderr
        assert "remote: broken" in res.stderr
    finally:
        (srv.home / "vrefs" / "NOTXT.off").replace(srv.home / "vrefs" / "NOTXT")


def test_configs_description_daemon_gitweb(srv):
    path = srv.repo_path("plain")
    cfg = subprocess.run(["git", "config", "--file", str(path / "config"), "--list"],
                         capture_output=True, text=True, check=True).stdout
    assert "hooks.mailinglist=dev@example.com" in cfg and "foo.bar=baz" in cfg
    assert "gitweb.description=the plain repo" in cfg
    # allowed by the (too broad) setting, yet never written: they run programs
    assert "hookspath" not in cfg.lower() and "sshcommand" not in cfg.lower()
    assert (path / "description").read_text() == "the plain repo\n"
    assert (path / "git-daemon-export-ok").exists()
    assert not (srv.repo_path("web") / "git-daemon-export-ok").exists()
    listed = (srv.home / "projects.list").read_text().splitlines()
    assert "web.git" in listed and "plain.git" in listed and "vr.git" not in listed
    assert not os.path.exists("/tmp/pwned")


def test_default_writes_no_config_and_warns(gitserve_factory):
    srv = gitserve_factory(users=("alice",))
    work = srv.clone("admin", "gitolite-admin")
    conf = work / "conf" / "gitolite.conf"
    conf.write_text(conf.read_text() + "\n@g = alice\nrepo zz\n    RW+ = alice\n"
                    "    config foo.bar = baz\n    desc = \"zz repo\"\n"
                    "include \"x.conf\"\n")
    (work / "conf" / "x.conf").write_text("repo zz\n    R = @g\n")
    (work / "conf" / "y.conf").write_text("repo zz\n    R = @g\n")
    srv.git("admin", "add", "conf", cwd=work)
    srv.git("admin", "commit", "-q", "-m", "zz", cwd=work)
    res = srv.git("admin", "push", "origin", "HEAD", cwd=work)
    assert "remote: WARNING: git config 'foo.bar' not allowed" in res.stderr
    assert "remote: WARNING: git config 'gitweb.description' not allowed" in res.stderr
    assert f"remote: Initialized empty Git repository in {srv.repo_path('zz')}/" in res.stderr
    cfg = (srv.repo_path("zz") / "config").read_text()
    assert "foo" not in cfg and "gitweb" not in cfg
    conf.write_text(conf.read_text() + "include \"x.conf\"\n")
    srv.git("admin", "commit", "-q", "-am", "twice", cwd=work)
    res = srv.git("admin", "push", "origin", "HEAD", cwd=work)
    assert "remote: WARNING: x.conf already included" in res.stderr


REFEX_CONF = """repo gitolite-admin
    RW+ = admin
repo r1
    RW+                                 =   alice
    RW+ master                          =   bob
    RW+                                 =   bob
    RW+ VREF/NAME/Makefile              =   bob
    -   master and VREF/NAME/Makefile   =   bob
"""


def test_refex_expressions_through_an_admin_push_and_a_push(gitserve_factory):
    """`[server] refex_expr = true` (Gitolite's ENABLE 'refex-expr'): the admin push shows the
    sugar's `>>>>` line as Gitolite's compile prints it, and bob's push of a Makefile to master
    is refused with the expression's message while the same commit goes to another branch."""
    srv = gitserve_factory(users=("alice", "bob"), settings={"server": {"refex_expr": True}})
    admin = srv.clone("admin", "gitolite-admin")
    (admin / "conf" / "gitolite.conf").write_text(REFEX_CONF)
    srv.git("admin", "commit", "-qam", "refex", cwd=admin)
    res = srv.git("admin", "push", "origin", "HEAD:master", cwd=admin)
    assert "remote: >>>> - master and VREF/NAME/Makefile = bob" in res.stderr, res.stderr
    work = srv.clone("alice", "r1")
    srv.commit("alice", work, "README", "seed\n")
    srv.git("alice", "push", "origin", "HEAD:master", cwd=work)
    work = srv.clone("bob", "r1")
    srv.commit("bob", work, "f1", "no makefile\n")
    srv.git("bob", "push", "origin", "HEAD:master", cwd=work)
    srv.commit("bob", work, "Makefile", "all:\n")
    res = srv.git("bob", "push", "origin", "HEAD:master", cwd=work, check=False)
    lines = [line.rstrip() for line in res.stderr.splitlines()]  # git pads `remote:` lines
    assert res.returncode != 0
    i = lines.index("remote: FATAL: W VREF/refex-expr/sugar1 r1 bob DENIED by "
                    "VREF/refex-expr/sugar1")
    assert lines[i + 1:i + 4] == ["remote: ('master and VREF/NAME/Makefile' -> '1 and 1')",
                                  "remote:", "remote: error: hook declined to update "
                                  "refs/heads/master"], lines
    srv.git("bob", "push", "origin", "HEAD:m2", cwd=work)
