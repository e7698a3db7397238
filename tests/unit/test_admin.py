"""gitserve.adminrepo: the admin repo as the single source of truth, checked with the real git CLI."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from gitserve import adminrepo, repos
from gitserve.cli.init import default_conf
from gitserve.settings import Settings
from tests.support.tools import require_tool
from tests.support.keys import copy_home, keygen, sk_ed25519_line, ssh_keygen_fingerprint

GOOD_CONF = default_conf("alice")


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    exe = require_tool("git")
    env = dict(os.environ, GIT_AUTHOR_NAME="Pat Pusher", GIT_AUTHOR_EMAIL="pat@example.com",
               GIT_COMMITTER_NAME="Pat Pusher", GIT_COMMITTER_EMAIL="pat@example.com",
               GIT_CONFIG_NOSYSTEM="1", HOME=str(cwd or "/"))
    return subprocess.run([exe, *args], cwd=cwd, env=env, check=check, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def home(tmp_path, home_template) -> Settings:
    return Settings(home=copy_home(home_template, tmp_path))


def tip(s: Settings) -> str:
    return git("--git-dir", str(s.admin_repo), "rev-parse", "HEAD").stdout.strip()


def object_count(s: Settings) -> int:
    return sum(len(files) for _, _, files in os.walk(s.admin_repo / "objects"))


def push_change(s: Settings, tmp: Path, edit, message: str = "by push", branch: str = "HEAD") -> str:
    """Clone the admin repo, let EDIT change the work tree, commit and push straight to the
    bare repo (as receive-pack would after validation), to BRANCH (default: the tip)."""
    work = tmp / f"work{time.monotonic_ns()}"
    git("clone", "-q", str(s.admin_repo), str(work), cwd=tmp)
    edit(work)
    git("add", "-A", cwd=work)
    git("commit", "-qm", message, cwd=work)
    git("push", "-q", "origin", f"HEAD:{branch}" if branch != "HEAD" else "HEAD", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).stdout.strip()


def test_current_reads_keys_and_caches_by_tip(home, tmp_path):
    state = adminrepo.current(home)
    assert state.commit == tip(home)
    assert state.branch == "refs/heads/master"
    [entry] = state.keys
    _, fp, _ = ssh_keygen_fingerprint(tmp_path / "alice.pub")
    assert (entry.user, entry.path, entry.fingerprint) == ("alice", "keydir/alice.pub", fp)
    assert state.user_for_key(entry.key.blob) == "alice"
    assert state.user_for_key(b"\x00\x00\x00\x0bssh-ed25519" + b"\x00" * 36) is None
    assert adminrepo.current(home) is state
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        adminrepo.current(home)
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 0.001, f"current() took {per_call * 1e6:.0f}us with an unchanged tip"


def test_worker_key_is_the_builder(home):
    from gitserve import keys

    blob = keys.parse_file_text((home.home / "worker_key.pub").read_text()).blob
    assert adminrepo.current(home).user_for_key(blob) == adminrepo.BUILDER


def test_new_tip_picked_up_without_restart(home, tmp_path):
    before = adminrepo.current(home)
    bob = keygen(tmp_path, "bob")
    new = push_change(home, tmp_path, lambda w: (w / "keydir" / "bob.pub").write_text(bob.read_text()))
    after = adminrepo.current(home)
    assert after.commit == new != before.commit
    assert after.users == ["alice", "bob"]


def test_add_key_commits_who_and_what(home, tmp_path):
    bob = keygen(tmp_path, "bob", "ecdsa")
    entry, sha = adminrepo.add_key(home, "bob", bob.read_text(), "Ada Admin <ada@example.com>")
    assert sha == tip(home)
    log = git("--git-dir", str(home.admin_repo), "log", "-1", "--format=%an <%ae>%n%B").stdout
    assert log.startswith("Ada Admin <ada@example.com>\nadd-key: keydir/bob.pub for bob (ECDSA SHA256:")
    assert "Ada Admin" in log.splitlines()[-1] or "Added by Ada Admin" in log
    files = git("--git-dir", str(home.admin_repo), "show", "--name-status", "--format=", sha).stdout
    assert files.split() == ["A", "keydir/bob.pub"]
    assert entry.fingerprint == ssh_keygen_fingerprint(bob)[1]
    git("--git-dir", str(home.admin_repo), "fsck", "--strict")
    from gitserve import audit

    last = list(audit.read(home))[-1]
    assert (last["user"], last["op"], last["repo"], last["ref"], last["new"], last["result"]) == (
        "Ada Admin", "admin", "gitolite-admin", "refs/heads/master", sha, "updated")
    assert last["reason"].startswith("add-key: keydir/bob.pub for bob")
    # a second key needs a label
    bob2 = keygen(tmp_path, "bob2")
    with pytest.raises(adminrepo.AdminError, match="bob@LABEL"):
        adminrepo.add_key(home, "bob", bob2.read_text(), "ada")
    entry2, _ = adminrepo.add_key(home, "bob@laptop", bob2.read_text(), "ada")
    assert (entry2.user, entry2.path) == ("bob", "keydir/bob@laptop.pub")
    assert [e.path for e in adminrepo.current(home).keys_of("bob")] == ["keydir/bob.pub", "keydir/bob@laptop.pub"]
    # email-style user names are users, not labels
    carol = keygen(tmp_path, "carol")
    entry3, _ = adminrepo.add_key(home, "carol@example.com", carol.read_text(), "ada")
    assert entry3.user == "carol@example.com"


@pytest.mark.parametrize(
    "user,text,needle",
    [
        ("bob", "ssh-ed25519 AAAAnotakey", "invalid key"),
        ("bob", "", "invalid key"),
        ("bob", sk_ed25519_line(), "cannot be verified"),
        ("b/ob", None, "not a valid user name"),
        ("../x", None, "not a valid user name"),
        ("@all", None, "not a valid user name"),
        ("alice", None, "already has this key"),
        ("mallory", None, "already belongs to user alice"),
    ],
)
def test_add_key_refusals_change_nothing(home, tmp_path, user, text, needle):
    if text is None:
        text = (tmp_path / "alice.pub").read_text()
    before, objects = tip(home), object_count(home)
    with pytest.raises(adminrepo.AdminError, match=needle) as exc:
        adminrepo.add_key(home, user, text, "ada")
    assert "\n" not in str(exc.value)
    assert tip(home) == before and object_count(home) == objects


def test_remove_key(home, tmp_path):
    b1, b2 = keygen(tmp_path, "b1"), keygen(tmp_path, "b2", "rsa", 2048)
    adminrepo.add_key(home, "bob", b1.read_text(), "ada")
    e2, _ = adminrepo.add_key(home, "bob@work", b2.read_text(), "ada")
    before = tip(home)
    with pytest.raises(adminrepo.AdminError, match="has no key"):
        adminrepo.remove_key(home, "bob", "SHA256:" + "A" * 43, author="ada")
    with pytest.raises(adminrepo.AdminError, match="invalid fingerprint"):
        adminrepo.remove_key(home, "bob", "MD5:xx", author="ada")
    with pytest.raises(adminrepo.AdminError, match="no keys for user nobody"):
        adminrepo.remove_key(home, "nobody", author="ada")
    assert tip(home) == before
    removed, _ = adminrepo.remove_key(home, "bob", e2.fingerprint, author="Ada <ada@x>")
    assert [e.path for e in removed] == ["keydir/bob@work.pub"]
    assert [e.path for e in adminrepo.current(home).keys_of("bob")] == ["keydir/bob.pub"]
    msg = git("--git-dir", str(home.admin_repo), "log", "-1", "--format=%B").stdout
    assert "remove-key: 1 key of bob" in msg and e2.fingerprint in msg and "Ada" in msg
    adminrepo.add_key(home, "bob@work", b2.read_text(), "ada")
    removed, _ = adminrepo.remove_key(home, "bob@work", author="ada")  # that file only
    assert [e.path for e in removed] == ["keydir/bob@work.pub"]
    removed, _ = adminrepo.remove_key(home, "bob", author="ada")
    assert [e.user for e in removed] == ["bob"] and adminrepo.current(home).users == ["alice"]


def test_set_conf_validates_then_creates_repos(home, tmp_path):
    before, objects = tip(home), object_count(home)
    with pytest.raises(adminrepo.AdminError) as exc:
        adminrepo.set_conf(home, "repo foo\n    this is not a rule\n", "ada")
    assert str(exc.value).startswith("conf/gitolite.conf:2: ")
    assert tip(home) == before and object_count(home) == objects
    assert adminrepo.set_conf(home, GOOD_CONF, "ada") is None  # unchanged: no empty commit
    sha = adminrepo.set_conf(home, GOOD_CONF + "\nrepo team/proj\n    RW = alice\n", "Ada <a@x>")
    assert sha == tip(home)
    assert adminrepo.compile(home) == ["team/proj"]
    assert repos.exists(home, "team/proj") and repos.creator(home, "team/proj") is None
    assert adminrepo.compile(home) == []


def test_includes_are_relative_to_conf_dir(home, tmp_path):
    def edit(w: Path) -> None:
        (w / "conf" / "sub").mkdir()
        (w / "conf" / "sub" / "more.conf").write_text("repo extra\n    R = alice\n")
    push_change(home, tmp_path, edit)
    sha = adminrepo.set_conf(home, GOOD_CONF + 'include "sub/more.conf"\n', "ada")
    assert sha is not None
    assert adminrepo.compile(home) == ["extra"]


def test_validate_commit_reports_file_and_reason(home, tmp_path):
    assert adminrepo.validate_commit(home.admin_repo, tip(home)) is None
    n = iter(range(100))

    def check(edit) -> str | None:
        sha = push_change(home, tmp_path, edit, branch=f"refs/heads/try{next(n)}")
        return adminrepo.validate_commit(home.admin_repo, sha)

    bad_conf = check(lambda w: (w / "conf" / "gitolite.conf").write_text(GOOD_CONF + "garbage here\n"))
    assert bad_conf.startswith("conf/gitolite.conf:6: ")
    assert check(lambda w: (w / "keydir" / "eve.pub").write_text("ssh-rsa AAAA\n")).startswith(
        "keydir/eve.pub: ")
    assert check(lambda w: (w / "keydir" / "x y.pub").write_text("ssh-rsa AAAA\n")).startswith(
        "keydir/x y.pub: ")
    alice = (tmp_path / "alice.pub").read_text()
    assert "already belongs to user alice" in check(lambda w: (w / "keydir" / "eve.pub").write_text(alice))
    assert check(lambda w: os.symlink("/etc/passwd", w / "conf" / "x.conf")) == \
        "conf/x.conf: symlinks are not allowed in the admin repo"
    assert check(lambda w: (w / "conf" / "gitolite.conf").unlink()) == "conf/gitolite.conf: missing"
    # a duplicate file of the user's own key is fine, files not ending in .pub are ignored
    assert check(lambda w: ((w / "keydir" / "alice@old.pub").write_text(alice),
                            (w / "keydir" / "README").write_text("hi"))) is None
    assert adminrepo.validate_commit(home.admin_repo, "0" * 40).startswith("commit ")
    assert adminrepo.current(home).commit == tip(home)  # nothing above touched the default branch


def test_concurrent_changes_are_all_kept(home, tmp_path):
    pubs = [keygen(tmp_path, f"u{i}").read_text() for i in range(6)]
    errors: list[Exception] = []

    def add(i: int) -> None:
        try:
            adminrepo.add_key(home, f"u{i}", pubs[i], f"user{i}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert adminrepo.current(home).users == ["alice"] + [f"u{i}" for i in range(6)]
    count = git("--git-dir", str(home.admin_repo), "rev-list", "--count", "HEAD").stdout.strip()
    assert count == "7"


def test_racing_push_is_not_lost(home, tmp_path, monkeypatch):
    """The branch moves between reading the tip and the compare-and-swap: the change is
    recomputed on top of the push, and both survive."""
    bob, carol = keygen(tmp_path, "bob"), keygen(tmp_path, "carol")
    real_build = adminrepo.build
    pushed: list[str] = []

    def racing_build(files, *rest):  # (files, hostname)
        if not pushed:
            pushed.append(push_change(home, tmp_path, lambda w: (w / "keydir" / "bob.pub").write_text(
                bob.read_text())))
        return real_build(files, *rest)

    monkeypatch.setattr(adminrepo.writer, "build", racing_build)
    _, sha = adminrepo.add_key(home, "carol", carol.read_text(), "ada")
    parent = git("--git-dir", str(home.admin_repo), "rev-parse", f"{sha}^").stdout.strip()
    assert parent == pushed[0]
    monkeypatch.undo()
    assert adminrepo.current(home).users == ["alice", "bob", "carol"]


def test_broken_tip_written_behind_our_back_keeps_last_good_rules(home, tmp_path, caplog):
    good = adminrepo.current(home)
    bad = push_change(home, tmp_path, lambda w: (w / "conf" / "gitolite.conf").write_text("repo x\n  junk\n"))
    assert tip(home) == bad
    assert adminrepo.current(home) is good
    assert adminrepo.current(home) is good  # warned once, not per connection
    assert caplog.text.count("is unusable (conf/gitolite.conf:2: syntax error") == 1
    fixed = push_change(home, tmp_path, lambda w: (w / "conf" / "gitolite.conf").write_text(GOOD_CONF))
    assert adminrepo.current(home).commit == fixed
    # with nothing to fall back on (a fresh process), the error is raised
    adminrepo.forget()
    push_change(home, tmp_path, lambda w: (w / "conf" / "gitolite.conf").write_text("repo x\n  junk\n"))
    with pytest.raises(adminrepo.AdminError, match="conf/gitolite.conf:2"):
        adminrepo.current(home)


def test_remove_nested_key_leaves_a_clean_tree(home, tmp_path):
    bob = keygen(tmp_path, "bob")
    push_change(home, tmp_path, lambda w: ((w / "keydir" / "people" / "x").mkdir(parents=True),
                                           (w / "keydir" / "people" / "x" / "bob.pub").write_text(bob.read_text())))
    removed, sha = adminrepo.remove_key(home, "bob", author="ada")
    assert [e.path for e in removed] == ["keydir/people/x/bob.pub"]
    listing = git("--git-dir", str(home.admin_repo), "ls-tree", "-r", "-t", "--name-only", sha).stdout.split()
    assert listing == ["conf", "conf/gitolite.conf", "keydir", "keydir/alice.pub"]
    git("--git-dir", str(home.admin_repo), "fsck", "--strict")


@pytest.mark.parametrize(
    "conf,needle",
    [
        ("repo foo\n    RW+ alice\n", "conf/gitolite.conf:7: syntax error: 'RW+ alice'"),
        # the admin's own rules were in the file that is gone: nobody could push the fix
        ('include "admin.conf"\nrepo foo\n    RW+ = alice\n',
         "conf/gitolite.conf:1: included file not found: 'admin.conf' "
         "(and nobody could push to gitolite-admin then)"),
    ],
)
def test_confs_gitolite_would_half_apply_are_refused(home, conf, needle):
    before = tip(home)
    with pytest.raises(adminrepo.AdminError) as exc:
        adminrepo.set_conf(home, (GOOD_CONF if "syntax" in needle else "") + conf, "ada")
    assert str(exc.value) == needle
    assert tip(home) == before


def test_a_missing_include_is_a_warning_as_in_gitolite(home):
    """Gitolite warns and goes on without the file (its t/include-subconf.t relies on it);
    the admin repo's own rules are still there, so nobody is locked out."""
    adminrepo.set_conf(home, GOOD_CONF + 'include "missing.conf"\n', "ada")
    warnings = adminrepo.current(home).rules.warnings
    assert any("included file not found: 'missing.conf'" in w for w in warnings), warnings


def test_packed_refs_after_gc(home, tmp_path):
    """`git gc`/`pack-refs` moves the branch into packed-refs: reading and CAS still work."""
    git("--git-dir", str(home.admin_repo), "pack-refs", "--all", "--prune")
    assert not (home.admin_repo / "refs" / "heads" / "master").exists()
    adminrepo.forget(home)
    state = adminrepo.current(home)
    assert state.commit == tip(home) and state.branch == "refs/heads/master"
    _, sha = adminrepo.add_key(home, "bob", keygen(tmp_path, "bob").read_text(), "ada")
    assert tip(home) == sha == adminrepo.current(home).commit
    git("--git-dir", str(home.admin_repo), "pack-refs", "--all", "--prune")
    assert adminrepo.current(home).commit == sha
