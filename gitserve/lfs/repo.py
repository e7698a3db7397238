"""Where one repository's LFS data lives: HOME/lfs/REPO (see the package docstring)."""

from __future__ import annotations

from gitserve.settings import Settings

from .locks import LockTable
from .store import LfsStore


def store_for(settings: Settings, repo: str) -> LfsStore:
    return LfsStore(settings.lfs_dir / repo, settings.server.max_lfs_object_bytes)


def locks_for(settings: Settings, repo: str) -> LockTable:
    return LockTable(settings.lfs_dir / repo)
