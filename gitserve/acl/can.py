"""`can()`: the one yes/no access question (Gitolite's `access -q`), for everything that is
not a git service's check #1 or #2: the ssh commands, the web pages, LFS, `builds`/`deploy`.

A repository's roles live beside it (gl-creator, gl-perms: acl/wild.py), so the question
takes the repository's directory; a repo that is not there is asked about as missing, as
Gitolite does (then only a conf repo, or `C` on a pattern, may allow)."""

from __future__ import annotations

from pathlib import Path

from .engine import Rules
from .errors import AccessError
from .wild import read_wild


def repo_exists(repo_dir: Path) -> bool:
    """Is there a bare repository at REPO_DIR (what `git init --bare` leaves)?"""
    return (repo_dir / "objects").is_dir() and (repo_dir / "HEAD").is_file()


def can(rules: Rules, repo: str, user: str, perm: str, ref: str = "any", *,
        repo_dir: Path | None = None) -> bool:
    """Does USER have PERM (R, W, +, C, D, M) on REPO at REF ("any" or a full ref) under RULES?
    REPO_DIR is the repository on disk (None: not looked at, REPO checked as missing unless
    the conf names it). A name or ref Gitolite refuses outright is a no, not an error."""
    exists = repo_dir is not None and repo_exists(repo_dir)
    wild = read_wild(repo_dir) if exists and repo_dir is not None else None
    try:
        return bool(rules.check(repo, user, perm, ref, wild=wild, exists=exists).allowed)
    except AccessError:
        return False
