"""The admin repo over ssh, key management, wild repos, and the ssh commands."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CONF = """
repo gitolite-admin
    RW+ = admin
repo plain
    RW+ = alice
    R   = bob
repo users/CREATOR/..*
    C   = @all
    RW+ = CREATOR
    RW  = WRITERS
    R   = READERS
"""


@pytest.fixture(scope="module")
def srv(gitserve_module_factory):
    return gitserve_module_factory(users=("alice", "bob", "carol"), conf=CONF)


def _admin_checkout(srv) -> Path:
    return srv.clone("admin", "gitolite-admin")


def test_admin_push_good_takes_effect_without_restart(srv):
    work = _admin_checkout(srv)
    conf = work / "conf" / "gitolite.conf"
    conf.write_text(conf.read_text() + "\nrepo fresh\n    RW+ = carol\n")
    srv.git("admin", "commit", "-q", "-am", "add fresh", cwd=work)
    push = srv.git("admin", "push", "origin", "HEAD", cwd=work)
    assert "Initialized empty Git repository in " in push.stderr and "/fresh.git/" in push.stderr
    assert srv.repo_path("fresh").is_dir()
    # the next connection sees the new rule
    srv.clone("carol", "fresh")


def test_admin_push_bad_conf_is_rejected_with_the_parse_error(srv):
    work = _admin_checkout(srv)
    before = srv.git("admin", "ls-remote", srv.url("gitolite-admin")).stdout
    conf = work / "conf" / "gitolite.conf"
    conf.write_text(conf.read_text() + "\nrepo broken\n    RW+ = bad;user\n")
    srv.git("admin", "commit", "-q", "-am", "typo", cwd=work)
    push = srv.git("admin", "push", "origin", "HEAD", cwd=work, check=False)
    assert push.returncode != 0
    assert "conf/gitolite.conf:" in push.stderr
    assert "[remote rejected]" in push.stderr
    assert srv.git("admin", "ls-remote", srv.url("gitolite-admin")).stdout == before
    assert srv.ssh("alice", "info").returncode == 0  # nobody got locked out


def test_admin_push_bad_key_is_rejected(srv):
    work = _admin_checkout(srv)
    (work / "keydir" / "eve.pub").write_text("ssh-ed25519 AAAAnotakey eve\n")
    srv.git("admin", "add", "keydir/eve.pub", cwd=work)
    srv.git("admin", "commit", "-q", "-m", "eve", cwd=work)
    push = srv.git("admin", "push", "origin", "HEAD", cwd=work, check=False)
    assert push.returncode != 0
    assert "keydir/eve.pub" in push.stderr


def test_admin_push_new_key_lets_the_user_in(srv):
    key = srv.keygen("frank")
    work = _admin_checkout(srv)
    (work / "keydir" / "frank.pub").write_text(Path(f"{key}.pub").read_text())
    conf = work / "conf" / "gitolite.conf"
    conf.write_text(conf.read_text() + "\nrepo plain\n    R = frank\n")
    srv.git("admin", "add", "-A", cwd=work)
    srv.git("admin", "commit", "-q", "-m", "frank", cwd=work)
    srv.git("admin", "push", "-q", "origin", "HEAD", cwd=work)
    res = srv.ssh("frank", "info", key=key)
    assert res.returncode == 0, res.stderr
    assert " R  \tplain" in res.stdout


def test_add_key_refuses_garbage_and_a_key_someone_else_has(srv, tmp_path):
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("this is not a key\n")
    res = srv.admin_cli("admin", "add-key", "zed", str(garbage), check=False)
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1
    res = srv.admin_cli("admin", "add-key", "zed", f"{srv.key_for('alice')}.pub", check=False)
    assert res.returncode != 0 and "alice" in res.stderr
    # nothing changed: zed cannot log in with alice's key as zed, alice still is alice
    info = srv.ssh("alice", "info")
    assert info.stdout.startswith("hello alice,")


def test_wild_repo_creation_and_perms(srv):
    url = srv.url("users/alice/proj")
    work = srv.clone("alice", "users/alice/proj")
    srv.commit("alice", work, "a.txt")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    assert (srv.repo_path("users/alice/proj") / "gl-creator").read_text().strip() == "alice"
    # bob may not create in alice's space, nor read her repo yet
    denied = srv.git("bob", "ls-remote", url, check=False)
    assert "DENIED" in denied.stderr
    bad = srv.git("bob", "clone", srv.url("users/alice/other"), str(srv.tmp / "o"), check=False)
    assert bad.returncode != 0 and not srv.repo_path("users/alice/other").exists()

    assert srv.ssh("alice", "perms", "users/alice/proj", "+", "READERS", "bob").returncode == 0
    listed = srv.ssh("alice", "perms", "users/alice/proj", "-l")
    assert listed.stdout == "READERS bob\n"
    srv.git("bob", "ls-remote", url)
    push = srv.git("bob", "push", "origin", "HEAD:main", cwd=srv.clone("bob", "users/alice/proj"),
                   check=False)
    assert push.returncode != 0 and "FATAL: W any users/alice/proj bob DENIED" in push.stderr
    # only the creator manages perms
    res = srv.ssh("bob", "perms", "users/alice/proj", "+", "WRITERS", "bob")
    assert res.returncode != 0
    assert "repo does not exist, or you are not authorised" in res.stderr
    res = srv.ssh("alice", "perms", "users/alice/proj", "+", "BOSSES", "bob")
    assert res.returncode != 0 and "Invalid role 'BOSSES'" in res.stderr
    assert srv.ssh("alice", "perms", "users/alice/proj", "-", "READERS", "bob").returncode == 0
    assert "DENIED" in srv.git("bob", "ls-remote", url, check=False).stderr

    info = srv.ssh("alice", "info").stdout
    lines = info.splitlines()
    assert lines[0].startswith("hello alice, this is git@")
    assert lines[1] == ""
    # patterns first (with C: alice may create there), then the repos, Gitolite's columns
    assert lines[2].endswith("C\tusers/CREATOR/..*")
    assert " R W\tusers/alice/proj" in lines
    assert " R W\tplain" in lines


def test_desc_and_help(srv):
    work = srv.clone("carol", "users/carol/d")
    assert work.exists()
    assert srv.ssh("carol", "desc", "users/carol/d", "My", "project").returncode == 0
    assert srv.ssh("carol", "desc", "users/carol/d").stdout == "My project\n"
    res = srv.ssh("bob", "desc", "users/carol/d", "hijack")
    assert res.returncode != 0 and "not authorized" in res.stderr
    helped = srv.ssh("bob", "help")
    assert helped.returncode == 0
    for name in ("info", "perms", "desc", "help"):
        assert f"\t{name}\n" in helped.stdout
    # the address to use, not a placeholder (a newcomer copies it)
    assert "@HOST" not in helped.stdout
    assert f"ssh://git@127.0.0.1:{srv.port}/REPO" in helped.stdout


def test_empty_command_means_info_and_upload_archive(srv):
    work = srv.clone("alice", "plain")
    srv.commit("alice", work, "readme.txt", "archived\n")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    res = srv.ssh("bob", "")
    assert res.stdout.startswith("hello bob,"), res.stderr
    out = srv.tmp / "a.tar"
    srv.git("bob", "archive", "--remote", srv.url("plain"), "-o", str(out), "main")
    listing = subprocess.run(["tar", "tf", str(out)], capture_output=True, text=True, check=True)
    assert "readme.txt" in listing.stdout
    denied = srv.git("carol", "archive", "--remote", srv.url("plain"), "main", check=False)
    assert denied.returncode != 0 and "DENIED" in denied.stderr


def test_head_follows_first_pushed_branch(srv):
    work = srv.clone("alice", "users/alice/headrule")
    srv.commit("alice", work, "x.txt", "on trunk\n")
    srv.git("alice", "push", "-q", "origin", "HEAD:trunk", cwd=work)
    dest = srv.clone("alice", "users/alice/headrule")
    assert (dest / "x.txt").read_text() == "on trunk\n"
    assert srv.git("alice", "symbolic-ref", "HEAD", cwd=dest).stdout.strip() == "refs/heads/trunk"


def test_hidden_refs_are_not_advertised_or_pushable(srv):
    repo = srv.repo_path("plain")
    work = srv.clone("alice", "plain")
    sha = srv.commit("alice", work, "h.txt")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    subprocess.run(["git", "update-ref", "refs/gitserve/builds/1", sha], cwd=repo, check=True)
    ls = srv.git("alice", "ls-remote", srv.url("plain")).stdout
    assert "refs/gitserve" not in ls
    res = srv.git("alice", "push", "origin", "HEAD:refs/gitserve/x", cwd=work, check=False)
    assert res.returncode != 0 and "reserved" in res.stderr
