"""The lock table of one repository (Git LFS file locking), HOME/lfs/REPO.git/locks.json.

A lock is held on a path by one user; locking a path somebody holds is a conflict (409)
answered with the holder's lock, as the LFS locks API says. The table is a small JSON file
rewritten whole under an flock: lock traffic is rare and human-paced, and a file keeps the
repository's state in one directory that mirrors and backups copy as they are.
Who may lock and who may break another's lock is decided by the caller (access.py); this
module only keeps the table consistent.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from gitserve.fsutil import atomic_write, locked

from .store import LfsError

MAX_PATH = 4096


@dataclass(frozen=True)
class Lock:
    id: str
    path: str
    owner: str
    locked_at: str  # RFC 3339, UTC
    ref: str = ""

    def api(self) -> dict[str, object]:
        """The lock object of the HTTP locks API."""
        return {"id": self.id, "path": self.path, "locked_at": self.locked_at,
                "owner": {"name": self.owner}}


class LockConflict(LfsError):
    def __init__(self, lock: Lock) -> None:
        super().__init__(409, f"already created lock: {lock.path} is locked by {lock.owner}")
        self.lock = lock


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def clean_path(path: str) -> str:
    """PATH as git names it in a tree (`./a//b.psd` -> `a/b.psd`): a lock is matched against
    the paths a push changes, so another spelling of a locked file would neither conflict
    with its lock nor be enforced. Absolute paths and `..` are refused."""
    if not path or len(path) > MAX_PATH or "\x00" in path or "\n" in path:
        raise LfsError(422, "invalid lock path")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if path.startswith("/") or ".." in parts or not parts:
        raise LfsError(422, "invalid lock path: a path inside the repository, like dir/file.psd")
    return "/".join(parts)


class LockTable:
    """ROOT's lock table. DEFAULT_REF is the ref a lock made without one protects for the
    purpose of breaking it (the repository's HEAD branch; see remove())."""

    def __init__(self, root: Path, default_ref: str = "any", max_locks: int = 0) -> None:
        self.file = root / "locks.json"
        self.lockfile = root / "locks.lock"
        self.default_ref = default_ref
        # `[server] max_lfs_locks`: every push reads the whole table and every lock rewrites
        # it, so one writer scripting 100,000 locks would slow every push (0: no limit)
        self.max_locks = max_locks

    def _read(self) -> list[Lock]:
        try:
            raw = json.loads(self.file.read_text())
        except FileNotFoundError:
            return []
        return [Lock(**item) for item in raw]

    def _write(self, locks: list[Lock]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.file, json.dumps([asdict(lock) for lock in locks], indent=1),
                     durable=True)

    def all(self) -> list[Lock]:
        return self._read()

    def create(self, path: str, owner: str, ref: str = "") -> Lock:
        path = clean_path(path)
        with locked(self.lockfile):
            locks = self._read()
            for lock in locks:
                if lock.path == path:
                    raise LockConflict(lock)
            if self.max_locks and len(locks) >= self.max_locks:
                raise LfsError(422, f"lock refused: this repository holds {len(locks)} locks, "
                                    f"this server's limit (max_lfs_locks); unlock some first")
            lock = Lock(secrets.token_hex(16), path, owner, _now(), ref)
            locks.append(lock)
            self._write(locks)
            return lock

    def get(self, lock_id: str) -> Lock | None:
        return next((lock for lock in self._read() if lock.id == lock_id), None)

    def search(self, path: str = "", lock_id: str = "", cursor: str = "",
             limit: int = 100) -> tuple[list[Lock], str]:
        """Locks matching PATH / LOCK_ID, in creation order from CURSOR (a lock id);
        returns (page, next cursor or "")."""
        locks = [lock for lock in self._read()
                 if (not path or lock.path == path) and (not lock_id or lock.id == lock_id)]
        start = 0
        if cursor:
            ids = [lock.id for lock in locks]
            if cursor not in ids:
                raise LfsError(422, "invalid cursor")
            start = ids.index(cursor)
        limit = max(1, min(limit, 1000))
        page = locks[start:start + limit]
        rest = locks[start + limit:]
        return page, rest[0].id if rest else ""

    def remove(self, lock_id: str, user: str, force: bool,
               may_force: Callable[[str], bool]) -> Lock:
        """Remove LOCK_ID: its owner may; somebody else only with FORCE and MAY_FORCE(the
        lock's own ref, else DEFAULT_REF). Never a ref the caller names: with Gitolite's
        `RW+ personal/USER/` anybody has RW+ on some ref, and a lock is enforced on every
        branch."""
        with locked(self.lockfile):
            locks = self._read()
            lock = next((item for item in locks if item.id == lock_id), None)
            if lock is None:
                raise LfsError(404, "lock not found")
            if lock.owner != user:
                if not force:
                    raise LfsError(403, f"lock is owned by {lock.owner}: unlock with --force "
                                        "(needs RW+)")
                if not may_force(lock.ref or self.default_ref):
                    raise LfsError(403, f"lock is owned by {lock.owner}: breaking another "
                                        "user's lock needs RW+")
            locks.remove(lock)
            self._write(locks)
            return lock

    def held_by_others(self, user: str, paths: set[str]) -> list[Lock]:
        return [lock for lock in self._read() if lock.path in paths and lock.owner != user]
