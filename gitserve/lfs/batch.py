"""The batch and verify decisions, the same for HTTP (JSON) and SSH (pkt-lines).

A download names objects the repository holds (404 per object otherwise); an upload asks for
an upload action only for objects the store does not already hold with that size. Access is
decided for the whole request first, so a user without R learns nothing about any object:
the transports answer such a request exactly as they answer an unknown repository.
"""

from __future__ import annotations

from dataclasses import dataclass

from .access import LfsAccess
from .store import LfsError, LfsStore, valid_oid

MAX_OBJECTS = 10_000  # per batch request (git-lfs sends at most 100 by default)


@dataclass(frozen=True)
class Item:
    oid: str
    size: int
    action: str = ""  # "upload", "download" or "" (nothing to do)
    error: tuple[int, str] | None = None


def authorize(op: str, access: LfsAccess, ref: str = "") -> None:
    """Raise the transport's refusal unless ACCESS allows OP (upload|download) at all."""
    if op == "download":
        if not access.can_download():
            raise LfsError(404, "repository not found")
    elif op == "upload":
        if not access.can_download():
            raise LfsError(404, "repository not found")
        if not access.can_upload(ref):
            raise LfsError(403, f"write access to {ref or 'the repository'} denied for "
                                f"{access.user}")
    else:
        raise LfsError(422, f"unknown operation {op!r}")


def batch(op: str, objects: list[tuple[str, int]], access: LfsAccess, store: LfsStore,
          ref: str = "") -> list[Item]:
    authorize(op, access, ref)
    if len(objects) > MAX_OBJECTS:
        raise LfsError(413, f"too many objects in one batch (max {MAX_OBJECTS})")
    items = []
    for oid, size in objects:
        if not valid_oid(oid) or size < 0:
            items.append(Item(oid, size, error=(422, "invalid object id or size")))
            continue
        if op == "download":
            stored = store.size(oid)
            if stored is None:
                items.append(Item(oid, size, error=(404, "object does not exist")))
            else:
                items.append(Item(oid, stored, "download"))
            continue
        try:
            store.check_size(size)
        except LfsError as exc:
            items.append(Item(oid, size, error=(exc.status, exc.message)))
            continue
        items.append(Item(oid, size, "" if store.has(oid, size) else "upload"))
    return items


def verify(oid: str, size: int, access: LfsAccess, store: LfsStore, ref: str = "") -> None:
    """An upload's verify step: the object is stored with exactly SIZE bytes."""
    authorize("upload", access, ref)
    stored = store.size(oid) if valid_oid(oid) else None
    if stored is None:
        raise LfsError(404, f"object {oid} not found")
    if stored != size:
        raise LfsError(422, f"object {oid} has {stored} bytes, not {size}")
