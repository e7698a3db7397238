"""LFS downloads on a slave that lacks an object its master has: fetched from the master
first, then served (a read-through).

The master carries a repo's LFS objects before the refs that name them, so normally a slave
has every object its refs need. It can still lack one: the refs of a mirror push are read
when git runs, after the objects were listed, so a push landing in between moves them past
an object not yet sent; or an object was lost on the slave. A clone from the slave would
then fail on an object the master has. `FillingStore` asks the master (`mirror lfs-get REPO
OID`, with this host's server key) for an object it lacks, stores it only if its sha256 and
size match (store.receive), and answers as if it had been there.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from gitserve import repos
from gitserve.lfs.repo import store_for
from gitserve.lfs.store import LfsError, LfsStore, repo_root, valid_oid
from gitserve.settings import Settings

from .config import COPY, MirrorError, repo_mirror
from .transport import Transport

if TYPE_CHECKING:
    from gitserve.acl import Rules

log = logging.getLogger(__name__)
MAX_HEADER = 32
# A reader could otherwise make this slave ssh to its master once per made-up oid (a batch
# may name 10,000): a request fetches at most MAX_FILLS objects, and an oid the master did
# not have is not asked again for MISS_TTL seconds.
MAX_FILLS = 100
MISS_TTL = 60.0
MAX_MISSES = 10_000


class _Misses:
    """Recent (repo root, oid) pairs the master did not deliver, shared by the requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at: dict[tuple[str, str], float] = {}

    def recent(self, key: tuple[str, str]) -> bool:
        with self._lock:
            at = self._at.get(key)
            return at is not None and time.monotonic() - at < MISS_TTL

    def add(self, key: tuple[str, str]) -> None:
        with self._lock:
            if len(self._at) >= MAX_MISSES:
                self._at.clear()
            self._at[key] = time.monotonic()


MISSES = _Misses()


class FillingStore(LfsStore):
    """An LfsStore that fetches an object it lacks through FILL before saying it is absent
    (one per request: at most MAX_FILLS fetches)."""

    def __init__(self, root: Path, max_bytes: int, fill: Callable[[str, LfsStore], None]) -> None:
        super().__init__(root, max_bytes)
        self._fill = fill
        self._fills = 0

    def size(self, oid: str) -> int | None:
        found = super().size(oid)
        key = (str(self.root), oid)
        if found is None and valid_oid(oid) and self._fills < MAX_FILLS \
                and not MISSES.recent(key):
            self._fills += 1
            self._fill(oid, self)
            found = super().size(oid)
            if found is None:
                MISSES.add(key)
        return found


def fetch_from(settings: Settings, master: str, repo: str, oid: str, store: LfsStore) -> None:
    """Copy OID of REPO from MASTER into STORE; a failure is logged (the object stays absent)."""
    transport = Transport(settings)
    try:
        peer = transport.peer(master)
    except MirrorError as exc:
        log.warning("lfs read-through of %s %s: %s", repo, oid, exc)
        return
    argv = transport.ssh_argv(peer) + [f"{peer.user}@{peer.host}", f"mirror lfs-get {repo} {oid}"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=transport.env(peer))
    timer = threading.Timer(settings.mirror.push_timeout, proc.kill)
    timer.start()
    assert proc.stdout is not None and proc.stderr is not None
    try:
        header = proc.stdout.readline(MAX_HEADER).strip()
        if header.isdigit():
            out = proc.stdout
            store.receive(oid, int(header), iter(lambda: out.read(65536), b""))
            log.info("lfs read-through: %s %s from %s", repo, oid, master)
        else:
            why = proc.stderr.read(4096).decode("utf-8", "replace").strip()
            log.warning("lfs read-through of %s %s from %s: %s", repo, oid, master,
                        " ".join(why.split()) or "no answer")
    except (LfsError, OSError, ValueError) as exc:
        log.warning("lfs read-through of %s %s from %s: %s", repo, oid, master, exc)
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()


def download_store(settings: Settings, rules: Rules, repo: str) -> LfsStore:
    """The store a user's LFS download of REPO reads: on a copy, one that asks the master for
    what it lacks; elsewhere the plain store."""
    hostname = settings.server.hostname
    if hostname:
        mirror = repo_mirror(rules.options(repo, wild=repos.wild_info(settings, repo)))
        if mirror.mode(hostname) == COPY and mirror.master:
            master = mirror.master
            return FillingStore(repo_root(settings.lfs_dir, repo),
                                settings.server.max_lfs_object_bytes,
                                lambda oid, store: fetch_from(settings, master, repo, oid, store))
    return store_for(settings, repo)
