"""A push that changes a path somebody else holds an LFS lock on is refused (SPEC §11).

git-lfs checks locks in its own pre-push hook only when `lfs.<url>.locksverify` is on, and a
plain `git push` without git-lfs installed checks nothing: the server is the one place the
rule can hold. Runs as a push hook's before_update, after check #2, per ref: the changed paths
come from git's own diff of old and new (the pack is already in, so the objects are there).
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from gitserve.names import ZERO_SHA

if TYPE_CHECKING:
    from gitserve.git.pushhooks import PushContext, RefUpdate

from .repo import locks_for

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def changed_paths(repo: str, old: str, new: str) -> set[str]:
    base = EMPTY_TREE if old == ZERO_SHA else old
    out = subprocess.run(["git", "-C", repo, "diff", "--no-renames", "--name-only", "-z",
                          base, new], capture_output=True, check=True).stdout
    return {p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p}


class LockedPaths:
    """PushHook: refuse a ref update touching a path locked by another user."""

    def before_update(self, ctx: PushContext, update: RefUpdate) -> str | None:
        if update.is_delete or not update.ref.startswith("refs/heads/"):
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
