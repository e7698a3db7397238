"""Receive a pushed pack into a quarantine store, check it, then move it in.

Like git's receive-pack (GIT_QUARANTINE_PATH): objects of a push land in a private object
directory that borrows the repository's objects as an alternate. Only a pack that parses,
whose every object passes dulwich's format checks and whose references all resolve is
moved into the repository, so a corrupt or malicious pack never touches it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from dulwich.errors import ObjectFormatException
from dulwich.object_store import DiskObjectStore
from dulwich.objects import S_ISGITLINK, Blob, Commit, Tag, Tree


class BadPack(Exception):
    """The pushed pack is unreadable, malformed or not self-consistent (one-line reason)."""


class Quarantine:
    def __init__(self, repo_objects: Path, object_format=None) -> None:
        self.repo_objects = Path(repo_objects)
        self.path = Path(tempfile.mkdtemp(prefix="incoming-", dir=self.repo_objects))
        (self.path / "pack").mkdir()
        (self.path / "info").mkdir()
        kwargs = {"object_format": object_format} if object_format is not None else {}
        self.store = DiskObjectStore(str(self.path), alternates=[str(self.repo_objects)], **kwargs)
        self.new_ids: list[bytes] = []

    def receive(self, read_all: Callable[[int], bytes], read_some: Callable[[int], bytes] | None,
                max_input_size: int | None = None) -> None:
        try:
            pack = self.store.add_thin_pack(read_all, read_some, max_input_size=max_input_size)
        except Exception as exc:  # noqa: BLE001 - any failure means a bad pack
            raise BadPack(_one_line(exc) or type(exc).__name__) from exc
        if pack is not None:
            self.new_ids = list(pack)

    def exists(self, sha: bytes) -> bool:
        return sha in self.store

    def check(self) -> None:
        """fsck the received objects: well-formed, and everything they point at exists."""
        store = self.store
        for sha in self.new_ids:
            try:
                obj = store[sha]
                obj.check()
            except (ObjectFormatException, ValueError, KeyError, AssertionError) as exc:
                raise BadPack(f"object {sha.decode()}: {_one_line(exc)}") from exc
            for target in object_links(obj):
                if target not in store:
                    raise BadPack(f"object {sha.decode()}: missing {target.decode()}")

    def migrate(self) -> None:
        """Move the checked packs in: pack file first, index last, so readers never see half."""
        dest = self.repo_objects / "pack"
        dest.mkdir(exist_ok=True)
        for idx in sorted((self.path / "pack").glob("*.idx")):
            stem = idx.with_suffix("")
            for ext in (".pack", ".rev", ".bitmap"):
                src = stem.with_suffix(ext)
                if src.exists():
                    os.replace(src, dest / src.name)
            os.replace(idx, dest / idx.name)

    def close(self) -> None:
        try:
            self.store.close()
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(self.path, ignore_errors=True)


def object_links(obj) -> Iterable[bytes]:
    """Objects OBJ points to (tree, parents, entries, tag target); gitlinks are not ours to check."""
    if isinstance(obj, Commit):
        yield obj.tree
        yield from obj.parents
    elif isinstance(obj, Tree):
        for entry in obj.iteritems():
            if not S_ISGITLINK(entry.mode):
                yield entry.sha
    elif isinstance(obj, Tag):
        yield obj.object[1]
    elif isinstance(obj, Blob):
        return


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
