"""acl.can: the one yes/no access question of commands, pages, LFS and builds; a wild repo's
roles come from its directory, a missing repo is asked about as missing, a name or ref the
rules refuse is a no (never an exception)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gitserve import acl
from gitserve.acl import wild

CONF = """
repo plain
    RW+ = alice
    R   = bob
repo u/CREATOR/..*
    C   = @all
    RW+ = CREATOR
    R   = READERS
"""


def bare(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return path


def test_can_answers_from_the_rules_and_the_repository_on_disk(tmp_path: Path) -> None:
    rules = acl.load_files({"gitolite.conf": CONF})
    plain = bare(tmp_path / "plain.git")
    assert acl.can(rules, "plain", "alice", "W", repo_dir=plain)
    assert acl.can(rules, "plain", "bob", "R", repo_dir=plain)
    assert not acl.can(rules, "plain", "bob", "W", repo_dir=plain)
    assert not acl.can(rules, "plain", "carol", "R", repo_dir=plain)
    # a wild repo: its creator and READERS from gl-creator / gl-perms beside it
    mine = bare(tmp_path / "u" / "alice" / "x.git")
    wild.write_wild(mine, acl.WildInfo(creator="alice", roles={"READERS": ["carol"]}))
    assert acl.can(rules, "u/alice/x", "alice", "W", repo_dir=mine)
    assert acl.can(rules, "u/alice/x", "carol", "R", repo_dir=mine)
    assert not acl.can(rules, "u/alice/x", "carol", "W", repo_dir=mine)
    assert not acl.can(rules, "u/alice/x", "bob", "R", repo_dir=mine)
    # the same name with no repository there is missing: nobody reads or writes it (as
    # Gitolite's `access`), creating it is can_create's question
    gone = tmp_path / "u" / "alice" / "y.git"
    for user in ("alice", "bob"):
        assert not acl.can(rules, "u/alice/y", user, "R", repo_dir=gone)
        assert not acl.can(rules, "u/alice/y", user, "R")
    # a repository left without its gl-creator is no longer alice's
    (mine / "gl-creator").unlink()
    assert not acl.can(rules, "u/alice/x", "alice", "W", repo_dir=mine)
    # a ref Gitolite refuses outright is a no, not an AccessError
    assert not acl.can(rules, "plain", "alice", "W", "refs/heads/a;b", repo_dir=plain)
    assert not acl.can(rules, "plain", "alice", "Q", repo_dir=plain)
    assert acl.can(rules, "plain", "alice", "W", "refs/heads/main", repo_dir=plain)
