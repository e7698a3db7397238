"""Where one repository's LFS data lives: HOME/lfs/REPO (see the package docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gitserve import repos
from gitserve.settings import Settings

from .access import LfsAccess
from .locks import LockTable
from .store import LfsStore

if TYPE_CHECKING:
    from gitserve.acl import Rules


def store_for(settings: Settings, repo: str) -> LfsStore:
    return LfsStore(settings.lfs_dir / repo, settings.server.max_lfs_object_bytes)


def locks_for(settings: Settings, repo: str) -> LockTable:
    return LockTable(settings.lfs_dir / repo)


def access_for(settings: Settings, rules: Rules, repo: str, user: str) -> LfsAccess:
    """LfsAccess of USER on the existing repository REPO under RULES (Gitolite decisions,
    wild-repo roles included). LFS never creates a repository: an unknown one is refused by
    the transports exactly like one the user may not read."""
    wild = repos.wild_info(settings, repo)

    def check(perm: str, ref: str) -> bool:
        return rules.check(repo, user, perm, ref, wild=wild, exists=True).allowed

    return LfsAccess(user, check)
