"""`git-lfs-transfer REPO upload|download`: git-lfs 3's pure SSH protocol (the git-lfs
project's docs/proposals/ssh_adapter.md, version 1), served over any byte stream.

The transport (the ssh command) has already done check #1 for the operation (R for download,
W for upload) exactly as for git-upload-pack / git-receive-pack, so a user without R gets
Gitolite's FATAL line before a single packet and learns nothing about objects. Each request
is then decided again through the same LfsAccess as HTTP (batch.py), so refname-specific rules
apply to uploads and locks. Objects stream through store.py one packet at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from . import batch as batchmod
from .access import LfsAccess
from .locks import Lock, LockConflict, LockTable
from .pktline import DELIM_PKT, FLUSH, FLUSH_PKT, MAX_DATA, Delim, Flush, PktReader, \
    ProtocolError, pkt, text
from .store import LfsError, LfsStore, check_oid

log = logging.getLogger(__name__)

MAX_ARGS = 64
MAX_LINES = batchmod.MAX_OBJECTS
# A request body is held in memory whole: bounded in bytes as well as in lines (10,000 lines
# of 65,516 bytes would be 655 MB per session). 4 MiB, as the HTTP batch body's MAX_JSON,
# is 50 times a full batch of 10,000 `OID SIZE` lines.
MAX_BODY = 4 * 1024 * 1024


@dataclass
class Request:
    command: str
    args: dict[str, str]
    has_body: bool  # a delim-pkt followed: lines or data until the flush


class Transfer:
    def __init__(self, read: Callable[[int], bytes], write: Callable[[bytes], None],
                 operation: str, access: LfsAccess, store: LfsStore, locks: LockTable) -> None:
        if operation not in ("upload", "download"):
            raise LfsError(400, f"unknown operation {operation!r}: upload or download")
        self.reader = PktReader(read)
        self.write = write
        self.operation = operation
        self.access = access
        self.store = store
        self.locks = locks
        self.refname = ""

    # --- framing -------------------------------------------------------------------
    def _request(self) -> Request | None:
        try:
            first = self.reader.read()
        except EOFError:
            return None
        command = self.reader.text(first)
        args: dict[str, str] = {}
        while True:
            item = self.reader.read()
            if isinstance(item, Flush):
                return Request(command, args, False)
            if isinstance(item, Delim):
                return Request(command, args, True)
            if len(args) >= MAX_ARGS:
                raise ProtocolError("too many arguments")
            key, _, value = self.reader.text(item).partition("=")
            args[key] = value

    def _lines(self) -> list[str]:
        lines: list[str] = []
        total = 0
        for item in self.reader.data():
            total += len(item)
            if len(lines) >= MAX_LINES or total > MAX_BODY:
                raise ProtocolError("request body too large")
            lines.append(self.reader.text(item))
        return lines

    def _status(self, code: int, args: Sequence[str] = (), lines: list[str] | None = None) -> None:
        out = [text(f"status {code}")] + [text(a) for a in args]
        if lines is not None:
            out.append(b"0001")
            out += [text(line) for line in lines]
        out.append(FLUSH)
        self.write(b"".join(out))

    def _error(self, exc: LfsError) -> None:
        self._status(exc.status, lines=[exc.message])

    # --- the session ---------------------------------------------------------------
    def serve(self) -> None:
        self.write(text("version=1") + text("locking") + FLUSH)
        while True:
            req = self._request()
            if req is None:
                return
            if req.command == "quit":
                self._status(200)
                return
            try:
                self._dispatch(req)
            except LfsError as exc:
                self._error(exc)

    def _dispatch(self, req: Request) -> None:
        verb, _, rest = req.command.partition(" ")
        if verb == "version":
            if req.has_body:
                self._lines()
            if rest.strip() != "1":
                raise LfsError(400, f"unsupported version {rest.strip()!r}")
            self._status(200)
        elif verb == "batch":
            self._batch(req)
        elif verb == "get-object":
            self._get(rest, req)
        elif verb == "put-object":
            self._put(rest, req)
        elif verb == "verify-object":
            self._verify(rest, req)
        elif verb == "lock":
            self._lock(req)
        elif verb in ("list-lock", "list-locks"):
            self._list_locks(req, verifiable=verb == "list-locks")
        elif verb == "unlock":
            self._unlock(rest, req)
        else:
            if req.has_body:
                for _ in self.reader.data():
                    pass
            raise LfsError(400, f"unknown command {verb!r}")

    def _batch(self, req: Request) -> None:
        lines = self._lines() if req.has_body else []
        if req.args.get("hash-algo", "sha256") != "sha256":
            raise LfsError(409, "unsupported hash algorithm")
        self.refname = req.args.get("refname", self.refname)
        objects = []
        for line in lines:
            parts = line.split(" ")
            try:
                objects.append((parts[0], int(parts[1])))
            except (IndexError, ValueError) as exc:
                raise LfsError(400, f"malformed batch line {line[:100]!r}") from exc
        items = batchmod.batch(self.operation, objects, self.access, self.store, self.refname)
        out = []
        for item in items:
            if item.error is not None:
                # the ssh protocol has no per-object error: nothing to do for it, and the
                # client reports "no download action" (download) or skips it (upload)
                out.append(f"{item.oid} {item.size} noop")
            else:
                out.append(f"{item.oid} {item.size} {item.action or 'noop'}")
        self._status(200, ["hash-algo=sha256"], out)

    def _size_arg(self, req: Request) -> int:
        try:
            size = int(req.args["size"])
        except (KeyError, ValueError) as exc:
            raise LfsError(400, "a size argument is required") from exc
        if size < 0:
            raise LfsError(400, "invalid size")
        return size

    def _get(self, oid: str, req: Request) -> None:
        if req.has_body:
            self._lines()
        if self.operation != "download":
            raise LfsError(405, "get-object needs the download operation")
        batchmod.authorize("download", self.access)
        check_oid(oid)
        size = self.store.size(oid)
        if size is None:
            raise LfsError(404, f"object {oid} not found")
        self.write(text("status 200") + text(f"size={size}") + b"0001")
        for chunk in self.store.read_chunks(oid, MAX_DATA * 16):
            for i in range(0, len(chunk), MAX_DATA):
                self.write(pkt(chunk[i:i + MAX_DATA]))
        self.write(FLUSH)

    def _put(self, oid: str, req: Request) -> None:
        data: Iterator[bytes] = self.reader.data() if req.has_body else iter(())
        try:
            if self.operation != "upload":
                raise LfsError(405, "put-object needs the upload operation")
            batchmod.authorize("upload", self.access, self.refname)
            size = self._size_arg(req)
            self.store.receive(check_oid(oid), size, data)
        finally:
            for _ in data:  # whatever the verdict, the client's data is read to its flush
                pass
        log.info("lfs: %s stored %s (%s bytes)", self.access.user, oid, req.args.get("size"))
        self._status(200)

    def _verify(self, oid: str, req: Request) -> None:
        if req.has_body:
            self._lines()
        if self.operation != "upload":
            raise LfsError(405, "verify-object needs the upload operation")
        batchmod.verify(oid, self._size_arg(req), self.access, self.store, self.refname)
        self._status(200)

    def _lock_args(self, lock: Lock) -> list[str]:
        return [f"id={lock.id}", f"path={lock.path}", f"locked-at={lock.locked_at}",
                f"ownername={lock.owner}"]

    def _lock(self, req: Request) -> None:
        if req.has_body:
            self._lines()
        ref = req.args.get("refname", "")
        if self.operation != "upload":
            raise LfsError(403, f"locking needs W for {self.access.user}")
        refusal = self.access.lock_refusal(ref)
        if refusal:
            raise LfsError(403, refusal)
        try:
            lock = self.locks.create(req.args.get("path", ""), self.access.user, ref)
        except LockConflict as exc:
            self._status(409, self._lock_args(exc.lock), [exc.message])
            return
        self._status(201, self._lock_args(lock))

    def _list_locks(self, req: Request, verifiable: bool) -> None:
        if req.has_body:
            self._lines()
        batchmod.authorize("download", self.access)
        try:
            limit = int(req.args.get("limit", "100") or 100)
        except ValueError as exc:
            raise LfsError(400, "invalid limit") from exc
        page, cursor = self.locks.search(req.args.get("path", ""), req.args.get("id", ""),
                                       req.args.get("cursor", ""), limit)
        lines: list[str] = []
        for lock in page:
            lines += [f"lock {lock.id}", f"path {lock.id} {lock.path}",
                      f"locked-at {lock.id} {lock.locked_at}",
                      f"ownername {lock.id} {lock.owner}"]
            if verifiable or self.operation == "upload":
                lines.append(f"owner {lock.id} "
                             f"{'ours' if lock.owner == self.access.user else 'theirs'}")
        self._status(200, [f"next-cursor={cursor}"] if cursor else [], lines)

    def _unlock(self, lock_id: str, req: Request) -> None:
        if req.has_body:
            self._lines()
        ref = req.args.get("refname", "")
        if self.operation != "upload" or not self.access.can_lock(ref):
            raise LfsError(403, f"unlocking needs W for {self.access.user}")
        # git-lfs 3.3 sends no force argument over ssh (its HTTP client does): a user who
        # may break the lock (RW+ on the lock's ref) is taken at his word; anyone else is
        # refused as unforced
        lock_ref = ""
        found = self.locks.get(lock_id.strip())
        if found is not None:
            lock_ref = found.ref or self.locks.default_ref
        force = req.args.get("force", "") == "true" or \
            (bool(lock_ref) and self.access.can_force_unlock(lock_ref))
        lock = self.locks.remove(lock_id.strip(), self.access.user, force=force,
                                 may_force=self.access.can_force_unlock)
        self._status(200, self._lock_args(lock))


__all__ = ["Transfer", "FLUSH_PKT", "DELIM_PKT"]
