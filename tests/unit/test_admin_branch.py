"""The admin branch is Gitolite's `master`; homes made when it was `main` move over losslessly."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from gitserve import admin, repos
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
    admin._cache.pop(str(s.home), None)
    return gd(s, "rev-parse", "refs/heads/main")


def test_new_home_is_on_master(home):
    assert gd(home, "symbolic-ref", "HEAD") == "refs/heads/master"
    assert gd(home, "for-each-ref", "--format=%(refname)") == "refs/heads/master"
    assert admin.current(home).branch == admin.ADMIN_BRANCH


def test_old_home_on_main_is_moved_to_master_by_a_ref_move(home):
    old = make_old_home(home)
    note = admin.migrate_branch(home)
    assert note is not None and "main moved into it" in note
    assert gd(home, "symbolic-ref", "HEAD") == "refs/heads/master"
    assert gd(home, "rev-parse", "refs/heads/master") == old
    assert gd(home, "for-each-ref", "--format=%(refname)") == "refs/heads/master"
    assert admin.migrate_branch(home) is None  # done once
    log = [json.loads(x) for x in (home.logs_dir / "audit.log").read_text().splitlines()]
    assert log[-1]["reason"] == "admin branch main moved into master"


def test_reading_the_rules_migrates_an_old_home(home, tmp_path):
    old = make_old_home(home)
    state = admin.current(home)
    assert state.branch == admin.ADMIN_BRANCH and state.commit == old
    # and admin commands commit on master afterwards
    _, sha = admin.add_key(home, "bob", keygen(tmp_path, "bob").read_text(), "ada")
    assert gd(home, "rev-parse", "refs/heads/master") == sha
    assert gd(home, "rev-parse", f"{sha}^") == old


def test_a_stored_master_that_diverged_is_merged_keeping_both_histories(home, tmp_path):
    old = make_old_home(home)
    # an old server stored (never applied) a push to master that is not main's ancestor
    pushed = push_change(home, tmp_path, lambda w: (w / "conf" / "gitolite.conf").write_text(
        default_conf("alice") + "repo pushed-to-master\n    RW = alice\n"), branch="master")
    assert gd(home, "rev-parse", "refs/heads/main") == old
    state = admin.current(home)
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
    admin.migrate_branch(home)
    assert gd(home, "rev-parse", "refs/heads/master") == newer
    assert "newer" in admin.current(home).rules.repo_names()


def test_not_applied_note_is_one_line():
    note = admin.not_applied_note(["refs/heads/main", "refs/heads/wip"])
    assert "\n" not in note and "main, wip" in note and "only master is applied" in note
    assert repos.ADMIN_REPO == "gitolite-admin"
