"""The admin branch is Gitolite's `master`; homes made when it was `main` move over losslessly,
once, at start; the rules are only ever read from master (never from wherever HEAD points)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from dulwich.repo import Repo

from gitserve import adminrepo, repos
from gitserve.cli.init import default_conf
from gitserve.settings import Settings
from tests.support.keys import copy_home, keygen
from tests.support.tools import require_tool


def git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, GIT_AUTHOR_NAME="Pat Pusher", GIT_AUTHOR_EMAIL="pat@example.com",
               GIT_COMMITTER_NAME="Pat Pusher", GIT_COMMITTER_EMAIL="pat@example.com",
               GIT_CONFIG_NOSYSTEM="1", HOME=str(cwd or "/"))
    return subprocess.run([require_tool("git"), *args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def home(tmp_path, home_template) -> Settings:
    return Settings(home=copy_home(home_template, tmp_path))


def push_change(s: Settings, tmp: Path, edit, branch: str) -> str:
    """Commit EDIT in a clone of the admin repo and push it straight to BRANCH of the bare repo."""
    work = tmp / f"work{time.monotonic_ns()}"
    git("clone", "-q", str(s.admin_repo), str(work), cwd=tmp)
    edit(work)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "by push", cwd=work)
    git("push", "-q", "origin", f"HEAD:{branch}", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).stdout.strip()


def gd(s, *args: str) -> str:
    return git("--git-dir", str(s.admin_repo), *args).stdout.strip()


def make_old_home(s) -> str:
    """Turn a fresh home into one made by an older gitserve: admin branch `main`."""
    gd(s, "branch", "-m", "master", "main")
    gd(s, "symbolic-ref", "HEAD", "refs/heads/main")
    (s.admin_repo / adminrepo.migrate.MARKER).unlink()  # older homes had no marker
    adminrepo.forget(s)
    return gd(s, "rev-parse", "refs/heads/main")


def test_new_home_is_on_master(home):
    assert gd(home, "symbolic-ref", "HEAD") == "refs/heads/master"
    assert gd(home, "for-each-ref", "--format=%(refname)") == "refs/heads/master"
    assert adminrepo.current(home).branch == adminrepo.ADMIN_BRANCH


def test_old_home_on_main_is_moved_to_master_by_a_ref_move(home):
    old = make_old_home(home)
    note = adminrepo.migrate_branch(home)
    assert note is not None and "main moved into it" in note
    assert gd(home, "symbolic-ref", "HEAD") == "refs/heads/master"
    assert gd(home, "rev-parse", "refs/heads/master") == old
    assert gd(home, "for-each-ref", "--format=%(refname)") == "refs/heads/master"
    assert adminrepo.migrate_branch(home) is None  # done once
    log = [json.loads(x) for x in (home.logs_dir / "audit.log").read_text().splitlines()]
    assert log[-1]["reason"] == "admin branch main moved into master"


def test_reading_the_rules_never_migrates_nor_follows_head(home, tmp_path):
    old = make_old_home(home)
    bob = keygen(tmp_path, "bob").read_text()
    before = sorted(str(p.relative_to(home.admin_repo)) for p in home.admin_repo.rglob("*"))
    with pytest.raises(adminrepo.AdminError, match="no commit on refs/heads/master"):
        adminrepo.current(home)
    with pytest.raises(adminrepo.AdminError, match="no commit on refs/heads/master"):
        adminrepo.add_key(home, "bob", bob, "ada")
    assert gd(home, "symbolic-ref", "HEAD") == "refs/heads/main"  # a read wrote nothing
    assert sorted(str(p.relative_to(home.admin_repo)) for p in home.admin_repo.rglob("*")) == before
    # the move happens at start (serve); then reads and admin commands use master
    assert adminrepo.migrate_branch(home) is not None
    state = adminrepo.current(home)
    assert state.branch == adminrepo.ADMIN_BRANCH and state.commit == old
    _, sha = adminrepo.add_key(home, "bob", bob, "ada")
    assert gd(home, "rev-parse", "refs/heads/master") == sha
    assert gd(home, "rev-parse", f"{sha}^") == old


def mallory_conf(w: Path) -> None:
    (w / "conf" / "gitolite.conf").write_text(
        default_conf("alice") + "repo gitolite-admin\n    RW+ = mallory\n")


def test_a_head_a_user_moved_is_never_applied(home, tmp_path):
    """Issue 21: a user with `RW wip/` on gitolite-admin pushes a conf to a wip branch and
    points HEAD at it (the symbolic-ref command): neither a read nor a restart applies it."""
    master = gd(home, "rev-parse", "refs/heads/master")
    assert adminrepo.current(home).commit == master
    wip = push_change(home, tmp_path, mallory_conf, branch="wip/evil")
    gd(home, "symbolic-ref", "HEAD", "refs/heads/wip/evil")
    adminrepo.forget(home)
    state = adminrepo.current(home)
    assert state.commit == master
    assert "RW+ = mallory" not in adminrepo.tree_files(Repo(str(home.admin_repo)), Repo(
        str(home.admin_repo))[master.encode()].tree)[adminrepo.MAIN_CONF].decode()
    assert state.rules.check("gitolite-admin", "mallory", "W").allowed is False
    # the start-time migration puts HEAD back and applies nothing
    note = adminrepo.migrate_branch(home)
    assert note is not None and "HEAD now names master" in note and "not applied" in note
    assert gd(home, "symbolic-ref", "HEAD") == "refs/heads/master"
    assert gd(home, "rev-parse", "refs/heads/master") == master
    assert gd(home, "rev-parse", "refs/heads/wip/evil") == wip  # stored, as any other branch
    assert adminrepo.current(home).rules.check("gitolite-admin", "mallory", "W").allowed is False


def test_a_symbolic_master_is_not_followed(home, tmp_path):
    good = adminrepo.current(home)
    push_change(home, tmp_path, mallory_conf, branch="wip")
    gd(home, "symbolic-ref", "refs/heads/master", "refs/heads/wip")
    assert adminrepo.current(home) is good  # the last good rules stay in force
    adminrepo.forget(home)
    with pytest.raises(adminrepo.AdminError, match="symbolic ref"):
        adminrepo.current(home)
    with pytest.raises(adminrepo.AdminError, match="symbolic ref"):
        adminrepo.add_key(home, "bob", keygen(tmp_path, "bob").read_text(), "ada")
    assert gd(home, "rev-parse", "refs/heads/wip") != good.commit  # nothing written through it


def test_an_old_branch_with_a_broken_tree_is_not_moved(home, tmp_path):
    make_old_home(home)
    bad = push_change(home, tmp_path, lambda w: (w / "conf" / "gitolite.conf").write_text(
        "repo x\n  junk\n"), branch="main")
    with pytest.raises(adminrepo.AdminError, match="cannot become the admin branch master: "
                                                    "conf/gitolite.conf:2"):
        adminrepo.migrate_branch(home)
    assert gd(home, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert gd(home, "rev-parse", "refs/heads/main") == bad
    assert "refs/heads/master" not in gd(home, "for-each-ref", "--format=%(refname)")


def test_a_stored_master_that_diverged_is_merged_keeping_both_histories(home, tmp_path):
    old = make_old_home(home)
    # an old server stored (never applied) a push to master that is not main's ancestor
    pushed = push_change(home, tmp_path, lambda w: (w / "conf" / "gitolite.conf").write_text(
        default_conf("alice") + "repo pushed-to-master\n    RW = alice\n"), branch="master")
    assert gd(home, "rev-parse", "refs/heads/main") == old
    assert "merged into it" in (adminrepo.migrate_branch(home) or "")
    state = adminrepo.current(home)
    master = gd(home, "rev-parse", "refs/heads/master")
    assert state.commit == master
    assert gd(home, "rev-parse", f"{master}^1") == pushed
    assert gd(home, "rev-parse", f"{master}^2") == old
    assert gd(home, "rev-parse", f"{master}^{{tree}}") == gd(home, "rev-parse", f"{old}^{{tree}}")
    assert "pushed-to-master" not in state.rules.repo_names()  # the rules in force stay
    assert gd(home, "for-each-ref", "--format=%(refname)") == "refs/heads/master"
    git("--git-dir", str(home.admin_repo), "fsck", "--strict")


def test_master_behind_main_fast_forwards(home, tmp_path):
    base = gd(home, "rev-parse", "refs/heads/master")
    make_old_home(home)
    newer = push_change(home, tmp_path, lambda w: (w / "conf" / "gitolite.conf").write_text(
        default_conf("alice") + "repo newer\n    RW = alice\n"), branch="main")
    gd(home, "update-ref", "refs/heads/master", base)  # a stale master, behind main
    adminrepo.migrate_branch(home)
    assert gd(home, "rev-parse", "refs/heads/master") == newer
    assert "newer" in adminrepo.current(home).rules.repo_names()


def test_not_applied_note_is_one_line():
    note = adminrepo.not_applied_note(["refs/heads/main", "refs/heads/wip"])
    assert "\n" not in note and "main, wip" in note and "only master is applied" in note
    assert repos.ADMIN_REPO == "gitolite-admin"
