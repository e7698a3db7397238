"""Read a build's output tree without trusting it: every step through an open directory fd.

The output was written by a hostile script. Paths are never resolved as strings: each
directory is opened relative to its parent's fd with O_NOFOLLOW, each file is opened with
O_NOFOLLOW and checked with fstat on the open fd, so a symlink or a swapped component can
never lead the reader (the worker, maybe root) out of the tree. Only directories, regular
files and relative symlinks that stay inside the tree are accepted; a regular file with a
hard link outside the tree (st_nlink larger than the links seen inside) is refused, since
it may be another user's file (/etc/shadow, HOME/secrets.key) the build linked in.

Callers read only after the build's processes are gone (gitserve.sandbox reaps the PID
namespace), so the tree cannot change under the reader either.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import DeployError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 64


@dataclass
class Entry:
    rel: str            # path inside the tree, "" for the root itself
    kind: str           # dir | file | symlink
    mode: int
    size: int = 0
    target: str = ""    # symlink target
    fd: int | None = None  # open file (kind == file), valid only while iterating


def open_under(base: Path, rel: str, step: str) -> int:
    """Open directory BASE/REL walking REL's components with O_NOFOLLOW (BASE is trusted:
    made by the worker). Raises DeployError(step) if any component is not a real directory."""
    fd = os.open(base, _DIR_FLAGS)
    try:
        for part in [p for p in rel.split("/") if p not in ("", ".")]:
            if part == "..":
                raise DeployError(step, f"{rel} leaves the workspace")
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise DeployError(step, f"{rel} is not a directory in the workspace "
                                  f"({os.strerror(exc.errno or 0).lower()}: is {part} a symlink?)") from None
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _link_stays_inside(rel: str, target: str) -> bool:
    """A relative target that, resolved lexically from the link's directory, stays inside.
    (Publish checks the copied tree again with the kernel's resolution.)"""
    if not target or target.startswith("/"):
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    return joined != ".." and not joined.startswith("../")


def walk(root_fd: int, step: str, shown: str = "", skip: frozenset[str] = frozenset()
         ) -> Iterator[Entry]:
    """Every entry under ROOT_FD, parents before children, but for the top-level names in
    SKIP. Files come with an open fd (closed when the iteration moves on). Raises
    DeployError(step) on anything unsafe."""
    seen: dict[tuple[int, int], list] = {}

    def name(rel: str) -> str:
        return posixpath.join(shown, rel) if shown else rel

    def visit(dfd: int, rel: str, depth: int) -> Iterator[Entry]:
        if depth > MAX_DEPTH:
            raise DeployError(step, f"{name(rel)}: directories nested too deep")
        for entry in sorted(os.listdir(dfd)):
            if depth == 0 and entry in skip:
                continue
            path = posixpath.join(rel, entry) if rel else entry
            st = os.stat(entry, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(entry, dir_fd=dfd)
                if not _link_stays_inside(path, target):
                    raise DeployError(step, f"{name(path)} is a symlink out of the build output ({target})")
                yield Entry(path, "symlink", 0o777, target=target)
            elif stat.S_ISDIR(st.st_mode):
                sub = os.open(entry, _DIR_FLAGS, dir_fd=dfd)
                try:
                    yield Entry(path, "dir", stat.S_IMODE(os.fstat(sub).st_mode))
                    yield from visit(sub, path, depth + 1)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(st.st_mode):
                fd = os.open(entry, _FILE_FLAGS, dir_fd=dfd)
                try:
                    fst = os.fstat(fd)
                    if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                        raise DeployError(step, f"{name(path)} changed while it was read")
                    if fst.st_nlink > 1:
                        seen.setdefault((fst.st_dev, fst.st_ino), [fst.st_nlink, 0, path])[1] += 1
                    yield Entry(path, "file", stat.S_IMODE(fst.st_mode), fst.st_size, fd=fd)
                finally:
                    os.close(fd)
            else:
                raise DeployError(step, f"{name(path)} is not a file, directory or symlink")

    yield Entry("", "dir", stat.S_IMODE(os.fstat(root_fd).st_mode))
    yield from visit(root_fd, "", 0)
    for nlink, count, path in seen.values():
        if count < nlink:
            raise DeployError(step, f"{name(path)} is a hard link to a file outside the build output")


def _read_all(fd: int) -> Iterator[bytes]:
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return
        yield chunk


def pack(base: Path, rel: str, step: str = "pack", skip: frozenset[str] = frozenset()) -> bytes:
    """tar.gz of the directory BASE/REL (BASE trusted, REL walked with O_NOFOLLOW), without
    its top-level entries named in SKIP.
    Hard-link checks need the whole tree first, so entries go to a temporary tar that is
    only returned when the walk found nothing wrong."""
    buf = io.BytesIO()
    root = open_under(base, rel, step)
    try:
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for e in walk(root, step, rel, skip):
                info = tarfile.TarInfo(f"./{e.rel}" if e.rel else ".")
                info.mode = e.mode & 0o755
                if e.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif e.kind == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, e.target
                    tar.addfile(info)
                else:
                    assert e.fd is not None
                    info.size = e.size
                    with os.fdopen(os.dup(e.fd), "rb") as fh:
                        tar.addfile(info, fh)
    finally:
        os.close(root)
    return buf.getvalue()


def copy_into(src_fd: int, dest: Path, step: str = "publish", shown: str = "") -> tuple[int, int]:
    """Copy the tree under SRC_FD into the new directory DEST (made here, private to the
    worker); returns (files, bytes)."""
    files = size = 0
    dest.mkdir(mode=0o700)
    for e in walk(src_fd, step, shown):
        target = dest / e.rel if e.rel else dest
        if e.kind == "dir":
            if e.rel:
                target.mkdir(mode=0o755)
        elif e.kind == "symlink":
            os.symlink(e.target, target)
        else:
            assert e.fd is not None
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                for chunk in _read_all(e.fd):
                    os.write(out, chunk)
            finally:
                os.close(out)
            files += 1
            size += e.size
    os.chmod(dest, 0o755)
    return files, size


def check_links_resolve_inside(root: Path, step: str = "publish") -> None:
    """The kernel's answer for every symlink of ROOT, a tree nobody else can write (a copy
    the worker just made): each must resolve inside it."""
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = os.path.join(dirpath, entry)
            if os.path.islink(path):
                target = os.path.realpath(path)
                if target != real_root and not target.startswith(real_root + os.sep):
                    rel = os.path.relpath(path, root)
                    raise DeployError(step, f"{rel} is a symlink out of the build output "
                                      f"({os.readlink(path)})")
