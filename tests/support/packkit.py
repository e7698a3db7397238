"""Pack test helpers: a tiny generated repository, plumbing git on a bare repo, the object set
native git would send (`rev-list --objects`) and a loose commit as a push leaves it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.bench import repogen

TINY = repogen.RepoSpec("tiny", commits=80, dirs=2, files=5, edits_per_commit=2, lines=30)


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], input=input, check=True,
                          capture_output=True, timeout=60).stdout.decode()


def rev_list(repo: Path, *revs: str) -> set[str]:
    out = git(repo, "rev-list", "--objects", *revs)
    return {line[:40] for line in out.splitlines() if line}


_made = [0]


def commit_on(repo: Path, ref: str) -> str:
    """A new commit on REF adding one new file (objects written loose)."""
    _made[0] += 1
    tree = git(repo, "rev-parse", f"{ref}^{{tree}}").strip()
    blob = git(repo, "hash-object", "-w", "--stdin", input=b"new file %d\n" % _made[0]).strip()
    listing = git(repo, "ls-tree", tree) + f"100644 blob {blob}\tnew{_made[0]:04d}.txt\n"
    new_tree = git(repo, "mktree", input=listing.encode()).strip()
    parent = git(repo, "rev-parse", ref).strip()
    return subprocess.run(
        ["git", "--git-dir", str(repo), "-c", "user.name=T", "-c", "user.email=t@e",
         "commit-tree", new_tree, "-p", parent, "-m", "new"],
        check=True, capture_output=True).stdout.decode().strip()
