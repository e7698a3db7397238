"""The object store of one repository: content-addressed files written by streaming.

An upload is written to a temporary file in the store's own tmp/ (same file system, so the
final step is a rename) while its sha256 and length are computed; it becomes visible under
objects/ only when both match what the client declared. Memory stays at one chunk whatever
the object's size. dulwich's `LFSStore.write_object` keeps every chunk in a list before writing
(memory grows with the object), so writing is ours; the layout is dulwich's and git-lfs's, and
reads use plain files.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from gitserve.errors import GitserveError

OID_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024


class LfsError(GitserveError):
    """A refused LFS request: STATUS is the HTTP status both transports report."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def valid_oid(oid: str) -> bool:
    return bool(OID_RE.match(oid))


def check_oid(oid: str) -> str:
    if not valid_oid(oid):
        raise LfsError(422, f"invalid object id: {oid[:80]!r}")
    return oid


def repo_root(lfs_dir: Path, repo: str) -> Path:
    """LFS_DIR/REPO.git: one repository's LFS directory. The `.git` suffix is what keeps
    repositories apart, as in HOME/repositories: repository names may nest (`a` and
    `a/objects/f8/87/OID`, `a/locks.json`), and without it a user who may create a repository
    under another's name would own a directory at the other's object or lock-table path (the
    other's uploads then vanish, its locks and pushes fail). No component of a repository name
    ends in `.git` (repos.check_name), so REPO.git is never inside another's directory."""
    return lfs_dir / f"{repo}.git"


class LfsStore:
    """HOME/lfs/REPO.git: objects/aa/bb/OID, tmp/."""

    def __init__(self, root: Path, max_bytes: int = 0) -> None:
        self.root = root
        self.max_bytes = max_bytes  # 0: no limit

    def path(self, oid: str) -> Path:
        check_oid(oid)
        return self.root / "objects" / oid[0:2] / oid[2:4] / oid

    def size(self, oid: str) -> int | None:
        """The stored object's size, None if absent."""
        try:
            return self.path(oid).stat().st_size
        except FileNotFoundError:
            return None

    def has(self, oid: str, size: int | None = None) -> bool:
        stored = self.size(oid)
        return stored is not None and (size is None or stored == size)

    def open(self, oid: str) -> BinaryIO:
        try:
            return open(self.path(oid), "rb")
        except FileNotFoundError as exc:
            raise LfsError(404, f"object {oid} not found") from exc

    def read_chunks(self, oid: str, chunk: int = CHUNK) -> Iterator[bytes]:
        with self.open(oid) as f:
            while True:
                data = f.read(chunk)
                if not data:
                    return
                yield data

    def check_size(self, size: int) -> None:
        if size < 0:
            raise LfsError(422, f"invalid size {size}")
        if self.max_bytes and size > self.max_bytes:
            raise LfsError(422, f"object of {size} bytes is over the limit of "
                                f"{self.max_bytes} bytes (max_lfs_object_bytes)")

    def upload(self, oid: str, size: int) -> Upload:
        """An upload of OID (SIZE bytes) in progress: write() chunks, then commit()."""
        check_oid(oid)
        self.check_size(size)
        return Upload(self, oid, size)

    def receive(self, oid: str, size: int, chunks: Iterable[bytes]) -> bool:
        """Store the object OID of SIZE bytes from CHUNKS; True if it was new.

        Refused (LfsError, nothing stored) when the content is longer or shorter than SIZE,
        over the store's limit, or does not hash to OID. CHUNKS is read to its end either
        way (a transport has to drain the client's data whatever the verdict)."""
        with self.upload(oid, size) as up:
            for chunk in chunks:
                up.write(chunk)
            return up.commit()

    def oids(self) -> Iterator[str]:
        """Every stored object id."""
        objects = self.root / "objects"
        if not objects.is_dir():
            return
        for path in objects.glob("??/??/*"):
            if valid_oid(path.name):
                yield path.name

    def remove(self, oid: str) -> None:
        self.path(oid).unlink(missing_ok=True)


class Upload:
    """One object being received: hashed and counted as it is written to STORE/tmp, renamed
    into objects/ by commit() only if length and sha256 match; anything else leaves nothing."""

    def __init__(self, store: LfsStore, oid: str, size: int) -> None:
        self.store = store
        self.oid = oid
        self.size = size
        self.length = 0
        self._digest = hashlib.sha256()
        tmp_dir = store.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f"{oid}.", dir=tmp_dir)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    def write(self, chunk: bytes) -> None:
        self.length += len(chunk)
        if self.length > self.size or self._file is None:
            return  # drained, not written: commit() refuses
        self._digest.update(chunk)
        self._file.write(chunk)

    def commit(self) -> bool:
        """Make the object visible; True if it was new. LfsError when it does not match."""
        if self._file is None:
            raise LfsError(500, "upload already finished")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        if self.length != self.size:
            raise LfsError(422, f"object {self.oid}: got {self.length} bytes, "
                                f"expected {self.size}")
        if self._digest.hexdigest() != self.oid:
            raise LfsError(422, f"object {self.oid}: content does not match its oid "
                                f"(sha256 {self._digest.hexdigest()})")
        final = self.store.path(self.oid)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self._tmp, 0o444)
        if final.exists():
            return False
        os.replace(self._tmp, final)
        return True

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        Path(self._tmp).unlink(missing_ok=True)
