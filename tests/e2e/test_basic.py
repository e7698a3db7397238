"""Clone, push, fetch, ls-remote, tags, force-push and delete through gitserve with real git."""

from __future__ import annotations

import subprocess

import pytest

CONF = """
repo gitolite-admin
    RW+ = admin
repo foo foo2
    RW+ = alice
    RW  = bob
    R   = carol
repo bar
    RW+ = alice
"""


@pytest.fixture(scope="module")
def srv(gitserve_module_factory):
    return gitserve_module_factory(users=("alice", "bob", "carol", "dave"), conf=CONF)


def test_clone_push_fetch_ls_remote(srv, tmp_path):
    work = srv.clone("alice", "foo")
    first = srv.commit("alice", work, "a.txt", "hello\n")
    push = srv.git("alice", "push", "origin", "HEAD:refs/heads/main", cwd=work)
    assert "[new branch]      HEAD -> main" in push.stderr

    # a plain clone checks the pushed branch out
    other = srv.clone("carol", "foo")
    assert (other / "a.txt").read_text() == "hello\n"
    assert srv.git("carol", "rev-parse", "HEAD", cwd=other).stdout.strip() == first

    second = srv.commit("alice", work, "b.txt", "two\n")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    srv.git("carol", "fetch", "-q", "origin", cwd=other)
    assert srv.git("carol", "rev-parse", "origin/main", cwd=other).stdout.strip() == second

    ls = srv.git("bob", "ls-remote", srv.url("foo")).stdout
    assert f"{second}\trefs/heads/main" in ls
    assert f"{second}\tHEAD" in ls

    # the repo on disk is sound
    fsck = subprocess.run(["git", "fsck", "--strict"], cwd=srv.repo_path("foo"),
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr


def test_tags_force_push_and_delete(srv):
    work = srv.clone("alice", "foo2")
    base = srv.commit("alice", work, "a.txt")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    srv.git("alice", "tag", "-a", "v1", "-m", "v1", cwd=work)
    srv.git("alice", "push", "-q", "origin", "v1", cwd=work)
    assert "refs/tags/v1^{}" in srv.git("bob", "ls-remote", srv.url("foo2")).stdout

    # bob (RW, no +) may fast-forward but not rewind, delete, or move a tag
    bwork = srv.clone("bob", "foo2")
    srv.commit("bob", bwork, "c.txt")
    srv.git("bob", "push", "-q", "origin", "HEAD:main", cwd=bwork)
    srv.git("bob", "reset", "-q", "--hard", base, cwd=bwork)
    srv.commit("bob", bwork, "d.txt")
    rewind = srv.git("bob", "push", "-f", "origin", "HEAD:main", cwd=bwork, check=False)
    assert rewind.returncode != 0
    assert "remote: FATAL: + refs/heads/main foo2 bob DENIED by fallthru" in rewind.stderr
    assert "[remote rejected] HEAD -> main" in rewind.stderr
    delete = srv.git("bob", "push", "origin", ":main", cwd=bwork, check=False)
    assert delete.returncode != 0 and "DENIED" in delete.stderr

    # alice (RW+) may
    srv.git("alice", "fetch", "-q", cwd=work)
    srv.git("alice", "reset", "-q", "--hard", base, cwd=work)
    forced = srv.commit("alice", work, "e.txt")
    srv.git("alice", "push", "-q", "-f", "origin", "HEAD:main", cwd=work)
    srv.git("alice", "push", "-q", "origin", "HEAD:topic", cwd=work)
    srv.git("alice", "push", "-q", "origin", ":topic", cwd=work)
    ls = srv.git("alice", "ls-remote", srv.url("foo2")).stdout
    assert f"{forced}\trefs/heads/main" in ls and "topic" not in ls


def test_per_ref_denial_lets_other_refs_through(gitserve_factory):
    conf = CONF + "repo baz\n    RW+ main = alice\n    RW+ dev = alice\n    -   wip = alice\n    RW+ = alice\n"
    srv = gitserve_factory(users=("alice",), conf=conf.replace("    RW+ = alice\n", "", 2))
    work = srv.clone("alice", "baz")
    srv.commit("alice", work, "a.txt")
    res = srv.git("alice", "push", "origin", "HEAD:main", "HEAD:wip", "HEAD:other",
                  cwd=work, check=False)
    assert res.returncode != 0
    assert "remote: FATAL: W refs/heads/wip baz alice DENIED by refs/heads/wip" in res.stderr
    ls = srv.git("alice", "ls-remote", srv.url("baz")).stdout
    assert "refs/heads/main" in ls and "refs/heads/wip" not in ls


def test_read_denied_and_unknown_repo_look_the_same(srv):
    denied = srv.git("dave", "clone", srv.url("foo"), str(srv.tmp / "x1"), check=False)
    missing = srv.git("dave", "clone", srv.url("nope"), str(srv.tmp / "x2"), check=False)
    assert denied.returncode != 0 and missing.returncode != 0
    assert "FATAL: R any foo dave DENIED by fallthru" in denied.stderr
    assert "FATAL: R any nope dave DENIED by fallthru" in missing.stderr
    assert "(or you mis-spelled the reponame)" in denied.stderr
    def body(text, name):
        return [ln.replace(name, "X") for ln in text.splitlines() if not ln.startswith("Cloning")]

    assert body(denied.stderr, "foo") == body(missing.stderr, "nope")

    work = srv.clone("carol", "foo")
    srv.commit("carol", work, "a.txt")
    res = srv.git("carol", "push", "origin", "HEAD:main", cwd=work, check=False)
    assert res.returncode != 0
    assert "FATAL: W any foo carol DENIED by fallthru" in res.stderr
