"""`git archive --remote`: git's upload-archive, with path arguments and --prefix, as tar,
tar.gz (tgz) or zip.

The client sends `argument X` pkt-lines (what follows `git archive --remote=...`). They are
checked as git's upload-archive checks them: only archive options are accepted (never
--remote, --exec or --output: those would reach a shell or the server's disk), the tree-ish
must be a *visible* ref name, optionally `REF:PATH` (git's uploadArchive.allowUnreachable =
false), and every path argument must exist in that tree. Errors are one `NACK` line.
The archive itself is written with Python's tarfile/zipfile, streamed on band 1.
"""

from __future__ import annotations

import io
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dulwich.objects import Commit, Tag, Tree
from dulwich.protocol import SIDE_BAND_CHANNEL_DATA
from dulwich.server import UploadArchiveHandler
from .errors import ArchiveError

FORMATS = ("tar", "tgz", "tar.gz", "zip")


@dataclass
class ArchiveArgs:
    fmt: str = "tar"
    prefix: str = ""
    treeish: str | None = None
    paths: list[str] = field(default_factory=list)


def parse_args(args: list[str]) -> ArchiveArgs:
    """The options of `git archive` that make sense remotely; anything else is refused."""
    out = ArchiveArgs()
    for arg in args:
        if arg.startswith("--format="):
            out.fmt = arg.split("=", 1)[1]
        elif arg.startswith("--prefix="):
            out.prefix = arg.split("=", 1)[1]
        elif arg in ("-v", "--verbose", "--worktree-attributes"):
            continue
        elif arg.startswith("-") and arg[1:].isdigit():
            continue  # compression level
        elif arg.split("=", 1)[0] in ("--remote", "--exec", "--output", "-o"):
            raise ArchiveError(f"Unexpected option {arg.split('=', 1)[0]}")
        elif arg.startswith("-"):
            raise ArchiveError(f"unknown option {arg!r}")
        elif out.treeish is None:
            out.treeish = arg
        else:
            out.paths.append(arg)
    if out.fmt not in FORMATS:
        raise ArchiveError(f"Unknown archive format '{out.fmt}'")
    if out.treeish is None:
        raise ArchiveError("no tree-ish given")
    for p in out.paths:
        if p.startswith("/") or ".." in p.split("/"):
            raise ArchiveError(f"{p}: '{p}' is outside repository")
    return out


class Entry:
    """One file of the archive."""

    def __init__(self, path: str, mode: int, data: bytes) -> None:
        self.path, self.mode, self.data = path, mode, data


def resolve(repo: Any, refs: Mapping[Any, bytes], treeish: str) -> tuple[Tree, int]:
    """(tree, mtime) of a visible `REF` or `REF:PATH`."""
    name, _, sub = treeish.partition(":")
    sha = None
    for candidate in (name, f"refs/{name}", f"refs/tags/{name}", f"refs/heads/{name}"):
        sha = refs.get(candidate.encode())
        if sha is not None:
            break
    if sha is None:
        raise ArchiveError(f"no such ref: {name}")
    obj = repo[sha]
    while isinstance(obj, Tag):
        obj = repo[obj.object[1]]
    mtime = int(time.time())
    if isinstance(obj, Commit):
        mtime = obj.commit_time
        obj = repo[obj.tree]
    if not isinstance(obj, Tree):
        raise ArchiveError(f"not a tree object: {treeish}")
    if sub.strip("/"):
        obj = _lookup(repo, obj, sub.strip("/"))
        if not isinstance(obj, Tree):
            raise ArchiveError(f"not a tree object: {treeish}")
    return obj, mtime


def _lookup(repo: Any, tree: Tree, path: str) -> Any:
    obj: Any = tree
    for part in path.split("/"):
        if not isinstance(obj, Tree):
            return None
        try:
            _mode, sha = obj[part.encode()]
        except KeyError:
            return None
        obj = repo[sha]
    return obj


def check_paths(repo: Any, tree: Tree, paths: list[str]) -> None:
    for p in paths:
        p = p.strip("/")
        if p and _lookup(repo, tree, p) is None:
            raise ArchiveError(f"pathspec '{p}' did not match any files")


def entries(repo: Any, tree: Tree, paths: list[str]) -> Iterator[Entry]:
    """Files (and directories, mode S_IFDIR) under TREE, limited to PATHS (each must exist)."""
    wanted = [p.strip("/") for p in paths]

    def selected(path: str, is_dir: bool) -> bool:
        if not wanted or "" in wanted:
            return True
        return any(path == w or path.startswith(w + "/") or (is_dir and w.startswith(path + "/"))
                   for w in wanted)

    def walk(t: Tree, base: str) -> Iterator[Entry]:
        for item in t.iteritems():
            name = base + item.path.decode("utf-8", "surrogateescape")
            if stat.S_ISDIR(item.mode):
                if selected(name, True):
                    if selected(name, False):
                        yield Entry(name + "/", stat.S_IFDIR | 0o775, b"")
                    yield from walk(repo[item.sha], name + "/")
            elif (stat.S_ISLNK(item.mode) or stat.S_ISREG(item.mode)) and selected(name, False):
                yield Entry(name, item.mode, repo[item.sha].as_raw_string())
            # gitlinks: content lives in another repository

    yield from walk(tree, "")


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream into the sideband."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        if data:
            self._write(data)
        return len(data)


def write_archive(fmt: str, files: Iterator[Entry], prefix: str, mtime: int,
                  write: Callable[[bytes], None]) -> None:
    sink = io.BufferedWriter(_Sink(write), buffer_size=65515)
    if fmt == "zip":
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            when = time.gmtime(max(mtime, 315532800))[:6]
            for e in files:
                info = zipfile.ZipInfo(prefix + e.path, date_time=when)
                if stat.S_ISDIR(e.mode):
                    info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                    zf.writestr(info, b"")
                    continue
                mode = stat.S_IFLNK | 0o777 if stat.S_ISLNK(e.mode) else \
                    stat.S_IFREG | (0o755 if e.mode & 0o111 else 0o644)
                info.external_attr = mode << 16
                info.create_system = 3
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, e.data)
    else:
        tmode = "w|gz" if fmt in ("tgz", "tar.gz") else "w|"
        with tarfile.open(fileobj=sink, mode=tmode,  # type: ignore[call-overload]
                          format=tarfile.PAX_FORMAT) as tf:
            for e in files:
                ti = tarfile.TarInfo(prefix + e.path)
                ti.mtime = mtime
                ti.uname = ti.gname = "root"
                if stat.S_ISDIR(e.mode):
                    ti.type, ti.mode = tarfile.DIRTYPE, 0o775
                    tf.addfile(ti)
                elif stat.S_ISLNK(e.mode):
                    ti.type, ti.mode = tarfile.SYMTYPE, 0o777
                    ti.linkname = e.data.decode("utf-8", "surrogateescape")
                    tf.addfile(ti)
                else:
                    ti.mode = 0o775 if e.mode & 0o111 else 0o664
                    ti.size = len(e.data)
                    tf.addfile(ti, io.BytesIO(e.data))
    sink.flush()


class UploadArchive(UploadArchiveHandler):
    """The upload-archive conversation over a pkt-line stream (ssh, or http's helper)."""

    def handle(self) -> None:
        raw = []
        for pkt in self.proto.read_pkt_seq():
            key, _, value = pkt.rstrip(b"\n").partition(b" ")
            if key != b"argument":
                return self._nack(f"unknown command {key.decode('utf-8', 'replace')!r}")
            raw.append(value.decode("utf-8", "surrogateescape"))
        try:
            args = parse_args(raw)
            assert args.treeish is not None
            tree, mtime = resolve(self.repo, self.repo.get_refs(), args.treeish)
            check_paths(self.repo, tree, args.paths)
        except ArchiveError as exc:
            return self._nack(str(exc))
        self.proto.write_pkt_line(b"ACK")
        self.proto.write_pkt_line(None)
        write_archive(args.fmt, entries(self.repo, tree, args.paths), args.prefix, mtime,
                      lambda chunk: self.proto.write_sideband(SIDE_BAND_CHANNEL_DATA, chunk))
        self.proto.write_pkt_line(None)

    def _nack(self, message: str) -> None:
        self.proto.write_pkt_line(f"NACK {message}\n".encode())
        self.proto.write_pkt_line(None)
