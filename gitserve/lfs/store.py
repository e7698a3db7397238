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


class LfsStore:
    """HOME/lfs/REPO: objects/aa/bb/OID, tmp/."""

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

    def receive(self, oid: str, size: int, chunks: Iterable[bytes]) -> bool:
        """Store the object OID of SIZE bytes from CHUNKS; True if it was new.

        Refused (LfsError, nothing stored) when the content is longer or shorter than SIZE,
        over the store's limit, or does not hash to OID. CHUNKS is always read to its end
        (a transport has to drain the client's data whatever the verdict)."""
        check_oid(oid)
        self.check_size(size)
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        length = 0
        fd, tmp = tempfile.mkstemp(prefix=f"{oid}.", dir=tmp_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    length += len(chunk)
                    if length > size:
                        continue  # drain, write nothing more: refused below
                    digest.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            if length != size:
                raise LfsError(422, f"object {oid}: got {length} bytes, expected {size}")
            if digest.hexdigest() != oid:
                raise LfsError(422, f"object {oid}: content does not match its oid "
                                    f"(sha256 {digest.hexdigest()})")
            final = self.path(oid)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            if final.exists():
                return False
            os.replace(tmp, final)
            return True
        finally:
            Path(tmp).unlink(missing_ok=True)

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
