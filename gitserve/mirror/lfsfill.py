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


class FillingStore(LfsStore):
    """An LfsStore that fetches an object it lacks through FILL before saying it is absent."""

    def __init__(self, root: Path, max_bytes: int, fill: Callable[[str, LfsStore], None]) -> None:
        super().__init__(root, max_bytes)
        self._fill = fill

    def size(self, oid: str) -> int | None:
        found = super().size(oid)
        if found is None and valid_oid(oid):
            self._fill(oid, self)
            found = super().size(oid)
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
