"""A push that changes a path somebody else holds an LFS lock on is refused (SPEC §11).

git-lfs checks locks in its own pre-push hook only when `lfs.<url>.locksverify` is on, and a
plain `git push` without git-lfs installed checks nothing: the server is the one place the
rule can hold. Runs as a push hook's before_update, after check #2, per ref (every namespace,
not only branches: a tag or a review ref carries the file too): the changed paths come from
git (the pack is already in, so the objects are there; see changed_paths).
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from gitserve.names import ZERO_SHA

if TYPE_CHECKING:
    from gitserve.git.pushhooks import PushContext, RefUpdate

from .repo import locks_for



def _git(repo: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True)


def _commit(repo: str, sha: str) -> bool:
    return _git(repo, "rev-parse", "--verify", "-q", f"{sha}^{{commit}}").returncode == 0


def _paths(out: bytes) -> set[str]:
    return {p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p}


def changed_paths(repo: str, old: str, new: str) -> set[str]:
    """The paths a ref update from OLD to NEW changes. An existing ref: git's diff of the two
    trees. A new ref (any namespace: a tag or refs/for/x carries files as well as a branch
    does): the paths the commits no ref reaches yet change, each against its first parent,
    so a branch made from main is not "changing" every file it holds. A ref to something
    that is not a commit (a tag of a blob) changes no file."""
    if not _commit(repo, new):
        return set()
    if old != ZERO_SHA and _commit(repo, old):
        out = _git(repo, "diff", "--no-renames", "--name-only", "-z", old, new)
    else:
        out = _git(repo, "log", "--format=", "--no-renames", "--name-only", "-z",
                   "--diff-merges=first-parent", new, "--not", "--all")
    if out.returncode != 0:
        raise subprocess.CalledProcessError(out.returncode, out.args, out.stdout, out.stderr)
    return _paths(out.stdout)


class LockedPaths:
    """PushHook: refuse a ref update touching a path locked by another user."""

    def before_update(self, ctx: PushContext, update: RefUpdate) -> str | None:
        if update.is_delete:
            return None
        table = locks_for(ctx.settings, ctx.repo_name)
        if not table.file.exists():
            return None
        locks = table.all()
        if not locks:
            return None
        paths = changed_paths(str(ctx.repo_path), update.old, update.new)
        held = [lock for lock in locks if lock.path in paths and lock.owner != ctx.user]
        if not held:
            return None
        for lock in held:
            ctx.progress(f"LFS lock: {lock.path} is locked by {lock.owner}")
        first = held[0]
        more = f" and {len(held) - 1} more" if len(held) > 1 else ""
        return f"{first.path} is locked by {first.owner}{more}"

    def after_push(self, ctx: PushContext, updates: list[RefUpdate]) -> None:
        return None
