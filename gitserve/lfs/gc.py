"""`gitserve admin lfs-gc`: remove the objects of a repository that no ref reaches.

An object is kept when a pointer in any ref's history (hidden refs included) names it, or when
it is younger than the grace period: git-lfs uploads objects in the pre-push hook, before the
push that references them arrives, so a young unreferenced object is most likely a push in
flight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from . import pointers
from .store import LfsStore


@dataclass(frozen=True)
class GcResult:
    kept: int
    removed: list[str]
    freed: int


def collect(repo: Path, store: LfsStore, grace_seconds: float = 24 * 3600,
            dry_run: bool = False) -> GcResult:
    live = pointers.referenced(repo)
    removed: list[str] = []
    freed = 0
    kept = 0
    now = time.time()
    for oid in list(store.oids()):
        path = store.path(oid)
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if oid in live or now - st.st_mtime < grace_seconds:
            kept += 1
            continue
        removed.append(oid)
        freed += st.st_size
        if not dry_run:
            store.remove(oid)
    return GcResult(kept, removed, freed)
