"""Receive a pushed pack into a quarantine store, check it, then move it in.

Like git's receive-pack (GIT_QUARANTINE_PATH): objects of a push land in a private object
directory that borrows the repository's objects as an alternate. Only a pack that parses,
whose every object passes dulwich's format checks and whose references all resolve is
moved into the repository, so a corrupt or malicious pack never touches it.

Limits (`[server] max_push_bytes`, `max_blob_bytes`) refuse a push whole. The check never
loads a blob: a blob links nothing and any bytes are a valid blob, so its type and size are
read from its pack entry header (following delta chains to the base's type), and only
commits, trees and tags - small, and the only objects that point at others - are parsed.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

from dulwich.errors import ObjectFormatException
from dulwich.object_store import DiskObjectStore, PackInputTooLarge
from dulwich.objects import S_ISGITLINK, Blob, Commit, Tag, Tree

from gitserve._compat import dulwich as dulwich_compat

from . import packformat, packstream
from .packformat import OFS_DELTA, REF_DELTA
from .errors import BadPack

BLOB_TYPE = packformat.BLOB
MAX_DELTA_CHAIN = 10_000  # git's own limit on delta depth is far lower


# the git environment of the quarantine being vetted in this thread (VREF programs get it)
_active_env: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "gitserve_quarantine_env", default=())


def active_env() -> dict[str, str]:
    """GIT_OBJECT_DIRECTORY & co. while check #2 runs on quarantined objects, else {}."""
    return dict(_active_env.get())


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
                max_input_size: int | None = None, max_blob_bytes: int = 0) -> None:
        try:
            if packstream.available(self.store):
                pack = packstream.add_thin_pack(self.store, read_all, read_some, max_input_size,
                                                max_blob_bytes)
            else:
                pack = self.store.add_thin_pack(read_all, read_some, max_input_size=max_input_size)
        except packstream.BlobTooLarge as exc:
            raise BadPack(f"push refused: it holds a blob of {human_bytes(exc.size)}, over this "
                          f"server's limit of {human_bytes(max_blob_bytes)} (max_blob_bytes)") from None
        except PackInputTooLarge:
            raise BadPack(f"push refused: it is larger than this server's limit of "
                          f"{human_bytes(max_input_size or 0)} (max_push_bytes)") from None
        except Exception as exc:  # noqa: BLE001 - any failure means a bad pack
            raise BadPack(_one_line(exc) or type(exc).__name__) from exc
        if pack is not None:
            self.new_ids = list(pack)

    def exists(self, sha: bytes) -> bool:
        return sha in self.store

    def missing(self, tips: Sequence[str]) -> set[str]:
        """The TIPS that are not there (the dulwich route's check() already checked links)."""
        return {t for t in tips if not self.exists(t.encode())}

    def env(self) -> dict[str, str]:
        """What a git command needs to see the repository plus the quarantined objects (git's
        receive-pack gives hooks the same)."""
        return {"GIT_OBJECT_DIRECTORY": str(self.path),
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(self.repo_objects),
                "GIT_QUARANTINE_PATH": str(self.path)}

    @contextlib.contextmanager
    def visible(self, repo: Any) -> Iterator[None]:
        """While inside, REPO (the handler's dulwich Repo: check #2's inspector, admin-repo
        validation) also finds the quarantined objects, and VREF programs get env()."""
        view = DiskObjectStore(str(self.path))
        alternates = repo.object_store.alternates
        alternates.append(view)
        token = _active_env.set(tuple(self.env().items()))
        try:
            yield
        finally:
            _active_env.reset(token)
            with contextlib.suppress(ValueError):
                alternates.remove(view)
            view.close()

    def check(self, max_blob_bytes: int = 0) -> None:
        """fsck the received objects: well-formed, and everything they point at exists; no
        blob over MAX_BLOB_BYTES (0: no limit). Blobs are never loaded (see the module doc)."""
        store = self.store
        headers = _PackHeaders(self.store.packs)
        try:
            for sha in self.new_ids:
                try:
                    info = headers.info(sha)
                except (ValueError, KeyError, OSError, zlib.error) as exc:
                    raise BadPack(f"object {sha.decode()}: {_one_line(exc)}") from exc
                if info is not None and info[0] == BLOB_TYPE:
                    if max_blob_bytes and info[1] > max_blob_bytes:
                        raise BadPack(f"push refused: it holds a blob of {human_bytes(info[1])}, over "
                                      f"this server's limit of {human_bytes(max_blob_bytes)} "
                                      f"(max_blob_bytes): {sha.decode()}")
                    continue
                try:
                    obj = store[sha]
                    obj.check()
                except (ObjectFormatException, ValueError, KeyError, AssertionError) as exc:
                    raise BadPack(f"object {sha.decode()}: {_one_line(exc)}") from exc
                if isinstance(obj, Blob) and max_blob_bytes and obj.raw_length() > max_blob_bytes:
                    raise BadPack(f"push refused: it holds a blob of {human_bytes(obj.raw_length())}, "
                                  f"over this server's limit of {human_bytes(max_blob_bytes)} "
                                  f"(max_blob_bytes): {sha.decode()}")
                for target in object_links(obj):
                    if target not in store:
                        raise BadPack(f"object {sha.decode()}: missing {target.decode()}")
        finally:
            headers.close()

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


class _PackHeaders:
    """Type and size of packed objects, read from their entry headers without inflating them.

    A pack entry starts with its type and size; a delta names its base (by offset or id) and
    its zlib stream starts with the base's size and the result's size. So an object's type is
    the type at the end of its delta chain and its size is in the first bytes of its entry."""

    def __init__(self, packs: Iterable[Any]) -> None:
        self.packs = list(packs)
        self.files: dict[int, BinaryIO] = {}

    def info(self, sha: bytes) -> tuple[int, int] | None:
        """(type number, size) of SHA, or None when it is in none of the packs."""
        for i, pack in enumerate(self.packs):
            try:
                offset = pack.index.object_offset(sha)
            except KeyError:
                continue
            return self._at(i, pack, offset)
        return None

    def _file(self, i: int, pack: Any) -> BinaryIO:
        if i not in self.files:
            self.files[i] = open(dulwich_compat.pack_data_path(pack), "rb")  # noqa: SIM115 - closed by close()
        return self.files[i]

    def _at(self, i: int, pack: Any, offset: int) -> tuple[int, int]:
        f = self._file(i, pack)
        size = -1
        for _ in range(MAX_DELTA_CHAIN):
            f.seek(offset)
            head = f.read(64)
            type_num, entry_size, pos = packformat.entry_header(head)
            if type_num not in (OFS_DELTA, REF_DELTA):
                return type_num, entry_size if size < 0 else size
            if type_num == OFS_DELTA:
                back, pos = packformat.ofs_distance(head, pos)
                base_offset = offset - back
                if not 0 < base_offset < offset:
                    raise ValueError("bad delta base offset")
            else:
                base_sha = head[pos:pos + 20]
                pos += 20
                base_offset = pack.index.object_offset(base_sha)
            if size < 0:
                f.seek(offset + pos)
                size = packformat.delta_result_size(f)
            offset = base_offset
        raise ValueError("delta chain too long")

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def human_bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
