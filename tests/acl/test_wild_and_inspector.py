"""gl-creator/gl-perms helpers and the dulwich inspector on a real repo made with git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from dulwich.repo import Repo

from gitserve import acl
from gitserve.acl import wild
from gitserve.acl.inspect_dulwich import DulwichInspector
from tests.support.gitwork import commit as _commit
from tests.support.gitwork import git as _git
from tests.support.tools import require_tool

ZERO = "0" * 40


def test_wild_files_round_trip(tmp_path: Path):
    repo = tmp_path / "w.git"
    repo.mkdir()
    assert wild.read_wild(repo) is None
    wild.write_wild(repo, acl.WildInfo("alice", {"READERS": ["bob", "@devs"], "WRITERS": ["c"]}))
    assert (repo / "gl-creator").read_text() == "alice\n"
    assert (repo / "gl-perms").read_text() == "READERS bob @devs\nWRITERS c\n"
    info = wild.read_wild(repo)
    assert info == acl.WildInfo("alice", {"READERS": ["bob", "@devs"], "WRITERS": ["c"]})


def test_gitolite_written_perms_are_read_like_gitolite(tmp_path: Path):
    repo = tmp_path / "w.git"
    repo.mkdir()
    (repo / "gl-creator").write_text("alice")
    (repo / "gl-perms").write_text("  READERS = u1   u2\n# comment\n\n@WRITERS u3\nBOSS u4\n")
    info = wild.read_wild(repo)
    assert info.roles == {"READERS": ["u1", "u2"], "WRITERS": ["u3"], "BOSS": ["u4"]}
    rules = acl.load_files({"gitolite.conf": "repo w/..*\n  C = @all\n  RW = WRITERS\n"
                                              "  R = READERS\n  RW+ = CREATOR\n"})
    assert rules.check("w/x", "u3", "W", wild=info).allowed
    assert rules.check("w/x", "u2", "R", wild=info).allowed
    assert not rules.check("w/x", "u4", "R", wild=info).allowed  # unknown role ignored
    assert rules.check("w/x", "alice", "+", wild=info).allowed


def test_bad_perms_change_nothing(tmp_path: Path):
    repo = tmp_path / "w.git"
    repo.mkdir()
    wild.write_wild(repo, acl.WildInfo("alice", {"READERS": ["bob"]}))
    with pytest.raises(ValueError):
        wild.write_perms(repo, {"READERS": ["ok"], "OWNERS": ["x"]})
    with pytest.raises(ValueError):
        wild.write_perms(repo, {"READERS": ["b%d"]})
    assert (repo / "gl-perms").read_text() == "READERS bob\n"


@pytest.fixture()
def repo(tmp_path: Path):
    require_tool("git")
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    shas = {"a": _commit(work, {"x.txt": b"1\n", "d/y.txt": b"2\n"}, "a")}
    shas["b"] = _commit(work, {"x.txt": b"2\n", "new.bin": b"\0" * 3000}, "b")
    _git(work, "checkout", "-q", "-b", "side", shas["a"])
    shas["s"] = _commit(work, {"side.txt": b"s\n"}, "s")
    _git(work, "checkout", "-q", "main")
    _git(work, "merge", "-q", "--no-ff", "-m", "m", "side")
    shas["m"] = _git(work, "rev-parse", "HEAD")
    subprocess.run(["git", "mv", "d/y.txt", "d/z.txt"], cwd=work, check=True)
    _git(work, "commit", "-q", "-m", "rename")
    shas["r"] = _git(work, "rev-parse", "HEAD")
    bare = tmp_path / "bare.git"
    _git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    _git(bare, "update-ref", "-d", "refs/heads/side")
    _git(bare, "update-ref", "refs/heads/main", shas["a"])
    with Repo(str(bare)) as r:
        yield r, shas, bare


def test_inspector_answers_like_git(repo):
    r, s, bare = repo
    ins = DulwichInspector(r)
    assert ins.is_ancestor(s["a"], s["m"]) and not ins.is_ancestor(s["b"], s["s"])
    assert ins.has_merge(s["a"], s["m"]) and not ins.has_merge(s["a"], s["b"])
    for old, new in [(s["a"], s["b"]), (s["b"], s["r"]), (ZERO, s["a"]), (s["m"], s["r"])]:
        tree_old = "4b825dc642cb6eb9a060e54bf8d69288fbee4904" if old == ZERO else old
        want = _git(bare, "diff", "--name-only", tree_old, new).split("\n")
        assert ins.changed_paths(old, new) == [p for p in want if p], (old, new)
    # git log --name-only NEW --not --all, as VREF/COUNT counts
    for added in (False, True):
        flt = ["--diff-filter=A"] if added else []
        out = _git(bare, "log", "--name-only", *flt, "--format=%n", s["r"], "--not", "--all")
        assert ins.pushed_paths(s["r"], added) == {p for p in out.split("\n") if p}
    assert ins.new_binary_files(s["a"], s["b"]) == [("new.bin", 3000)]
    raw, email = ins.top_commit(s["b"])
    assert email == "t@example.com" and raw.startswith("tree ")
