"""repos.py: hostile repo paths, creation, wild metadata, the HEAD rule (checked with real git)."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from gitserve import repos
from gitserve.git.pushhooks import ZERO_SHA
from gitserve.settings import Settings
from tests.support.tools import require_tool


@pytest.fixture
def settings(tmp_path):
    s = Settings(home=tmp_path / "home")
    s.repos_dir.mkdir(parents=True)
    return s


@pytest.mark.parametrize(
    "arg,name",
    [
        ("'/name.git'", "name"),
        ("name", "name"),
        ("name.git", "name"),
        ("/name", "name"),
        ("name/", "name"),
        ("'team/sub/proj.git'", "team/sub/proj"),
        ("~/u@x.y+z-1", "u@x.y+z-1"),
    ],
)
def test_parse_repo_arg(arg, name):
    assert repos.parse_repo_arg(arg) == name


@pytest.mark.parametrize(
    "arg",
    [
        "", "''", "../etc/passwd", "a/../../b", "foo/..", "'/../x.git'", "//etc/passwd", "/",
        "a//b", "a/./b", "name\x00.git", "na\nme", "na\tme", "-rf", ".hidden", "@group",
        "a b", "a;rm", "$(x)", "a`b`", "x" * 300, "a.git/b", "a.git.git", "ä",
    ],
)
def test_hostile_repo_args_refused(arg):
    with pytest.raises(repos.RepoError) as exc:
        repos.parse_repo_arg(arg)
    assert "\n" not in str(exc.value)


def test_create_sets_head_and_is_a_real_repo(settings):
    git = require_tool("git")
    p = repos.create(settings, "team/proj")
    assert p == settings.repos_dir / "team/proj.git"
    head = subprocess.run([git, "--git-dir", str(p), "symbolic-ref", "HEAD"],
                          capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    assert head == "refs/heads/main"
    subprocess.run([git, "--git-dir", str(p), "fsck"], check=True, capture_output=True, timeout=30)
    assert repos.creator(settings, "team/proj") is None
    assert repos.exists(settings, "team/proj")
    assert repos.list_names(settings) == ["team/proj"]
    assert not [f for f in os.listdir(settings.repos_dir) if f.startswith(".")]


def test_default_branch_setting(settings):
    settings.server.default_branch = "trunk"
    p = repos.create(settings, "x")
    assert (p / "HEAD").read_text().strip() == "ref: refs/heads/trunk"


def test_create_twice_and_racing_creators(settings):
    repos.create(settings, "once")
    with pytest.raises(repos.RepoError, match="already exists"):
        repos.create(settings, "once")
    results = []

    def make():
        try:
            repos.create(settings, "race", creator="alice")
            results.append("ok")
        except repos.RepoError:
            results.append("exists")

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == ["exists"] * 7 + ["ok"]
    assert sorted(os.listdir(settings.repos_dir)) == ["once.git", "race.git"]


def test_symlink_escape_refused(settings, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, settings.repos_dir / "evil.git")
    with pytest.raises(repos.RepoError, match="outside"):
        repos.path(settings, "evil")
    os.symlink(outside, settings.repos_dir / "dir")
    with pytest.raises(repos.RepoError, match="outside"):
        repos.create(settings, "dir/x")
    assert os.listdir(outside) == []
    repos.create(settings, "fine")
    assert repos.list_names(settings) == ["fine"]  # the escaping link is never listed


def test_wild_metadata_like_gitolite(settings):
    p = repos.create(settings, "u/alice/r1", creator="alice")
    assert (p / "gl-creator").read_text().strip() == "alice"
    assert repos.creator(settings, "u/alice/r1") == "alice"
    repos.write_perms(settings, "u/alice/r1", {"READERS": ["bob", "@devs"], "WRITERS": ["carol"]})
    assert (p / "gl-perms").read_text() == "READERS bob @devs\nWRITERS carol\n"
    info = repos.wild_info(settings, "u/alice/r1")
    assert info.creator == "alice" and info.roles == {"READERS": ["bob", "@devs"], "WRITERS": ["carol"]}
    # Gitolite's own gl-creator has no newline, its gl-perms may use `=`
    (p / "gl-creator").write_text("alice")
    (p / "gl-perms").write_text("# c\nWRITERS = x y\n")
    assert repos.creator(settings, "u/alice/r1") == "alice"
    assert repos.read_perms(settings, "u/alice/r1") == {"WRITERS": ["x", "y"]}
    with pytest.raises(repos.RepoError, match="Invalid role"):
        repos.write_perms(settings, "u/alice/r1", {"ADMINS": ["x"]})
    with pytest.raises(repos.RepoError, match="invalid user"):
        repos.write_perms(settings, "u/alice/r1", {"READERS": ["a;b"]})
    assert repos.read_perms(settings, "u/alice/r1") == {"WRITERS": ["x", "y"]}
    with pytest.raises(repos.RepoError, match="invalid creator"):
        repos.create(settings, "u/x/r", creator="a b")
    assert not repos.exists(settings, "u/x/r")
    assert repos.description(settings, "u/alice/r1") == ""
    repos.set_description(settings, "u/alice/r1", "Alice's first repo")
    assert (p / "description").read_text() == "Alice's first repo\n"
    with pytest.raises(repos.RepoError):
        repos.set_description(settings, "u/alice/r1", "two\nlines")


def _git(*args, cwd=None):
    git = require_tool("git")
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", GIT_CONFIG_NOSYSTEM="1", HOME=str(cwd or "/tmp"))
    return subprocess.run([git, *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


def test_head_moves_to_first_pushed_branch(settings, tmp_path):
    bare = repos.create(settings, "proj")
    work = tmp_path / "w"
    work.mkdir()
    _git("init", "-q", "-b", "dev", cwd=work)
    (work / "f").write_text("x")
    _git("add", "f", cwd=work)
    _git("commit", "-qm", "one", cwd=work)
    _git("branch", "feature", cwd=work)
    _git("push", "-q", str(bare), "dev", "feature", cwd=work)
    moved = repos.head_after_push(bare, ["refs/heads/dev", "refs/heads/feature"])
    assert moved == "refs/heads/dev"
    clone = tmp_path / "c"
    _git("clone", "-q", str(bare), str(clone), cwd=tmp_path)
    assert (clone / "f").read_text() == "x"
    # a later push never moves HEAD again
    _git("push", "-q", str(bare), "dev:other", cwd=work)
    assert repos.head_after_push(bare, ["refs/heads/other"]) is None


def test_head_stays_when_default_branch_pushed_or_tags_only(settings, tmp_path):
    bare = repos.create(settings, "p2")
    work = tmp_path / "w"
    work.mkdir()
    _git("init", "-q", "-b", "main", cwd=work)
    (work / "f").write_text("x")
    _git("add", "f", cwd=work)
    _git("commit", "-qm", "one", cwd=work)
    _git("tag", "v1", cwd=work)
    _git("push", "-q", str(bare), "v1", cwd=work)
    assert repos.head_after_push(bare, ["refs/tags/v1"]) is None
    _git("push", "-q", str(bare), "main", "main:dev", cwd=work)
    assert repos.head_after_push(bare, ["refs/heads/dev", "refs/heads/main"]) is None
    assert (bare / "HEAD").read_text().strip() == "ref: refs/heads/main"
    assert ZERO_SHA  # imported for callers' convenience


from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

_ALPHABET = st.sampled_from(list("ab.-_/@+~'\"\\ \x00\n\t$;:*?[]") + ["..", ".git", "/", "é"])


@hsettings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=12).map("".join))
def test_any_accepted_name_stays_inside_repositories(arg):
    """Whatever the client sends, an accepted name maps to a path strictly inside
    HOME/repositories, named NAME.git, with no traversal or control bytes."""
    base = "/srv/home/repositories"
    try:
        name = repos.parse_repo_arg(arg)
    except repos.RepoError as exc:
        assert "\n" not in str(exc)
        return
    assert repos.REPONAME_PATT.match(name) and ".." not in name
    full = os.path.normpath(os.path.join(base, f"{name}.git"))
    assert full.startswith(base + "/") and full == os.path.join(base, f"{name}.git")
    assert repos.parse_repo_arg(name) == name  # canonical form is a fixed point
