"""Extract a build's artifact tar without letting it write outside the destination.

The artifact comes from a build script, so it is hostile input. Python >= 3.11.4 (and 3.12+)
has tarfile's `data` filter for this; Debian 12's system Python is 3.11.2, which has no
`filter=` argument at all (every deploy failed there with a TypeError). There, each member is
checked here by the same rules before it is extracted:
- no absolute names, no '..' component, nothing that resolves (through links already
  extracted) outside the destination;
- only regular files, directories, and links whose target stays inside the destination
  (symlinks: relative targets only; hard links: to a member inside);
- no devices, FIFOs or other special files;
- no setuid/setgid/sticky bits, no group/other write; owner from this process, not the tar.
A refused member raises UnsafeMember and the caller fails the deploy.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from pathlib import Path

from gitserve.errors import GitserveError

HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


class UnsafeMember(GitserveError):
    """A member the data filter would refuse (one-line reason)."""


def extract_all(tar: tarfile.TarFile, dest: Path, use_filter: bool | None = None) -> None:
    """Extract every member of TAR under DEST by the `data` filter's rules.

    USE_FILTER None: tarfile's own filter when this Python has it, else the checks below."""
    if use_filter is None:
        use_filter = HAS_DATA_FILTER
    if use_filter:
        try:
            tar.extractall(dest, filter="data")
        except tarfile.FilterError as exc:
            raise UnsafeMember(str(exc)) from None
        return
    root = os.path.realpath(dest)
    for member in tar:
        _check(member, root)
        member.mode = _safe_mode(member)
        member.uid, member.gid = os.geteuid(), os.getegid()
        member.uname = member.gname = ""
        tar.extract(member, root, set_attrs=not member.issym(), numeric_owner=True)


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _check(member: tarfile.TarInfo, root: str) -> None:
    name = member.name
    if not name or "\x00" in name or name.startswith(("/", os.sep)) or os.path.isabs(name):
        raise UnsafeMember(f"{name!r}: absolute path")
    if ".." in name.replace(os.sep, "/").split("/"):
        raise UnsafeMember(f"{name!r}: '..' in the path")
    target = os.path.realpath(os.path.join(root, name))
    if not _inside(root, target):
        raise UnsafeMember(f"{name!r}: would be extracted outside the destination")
    if member.isreg() or member.isdir():
        return
    if member.issym():
        link = member.linkname
        if not link or os.path.isabs(link) or link.startswith("/"):
            raise UnsafeMember(f"{name!r}: symlink to an absolute path")
        resolved = os.path.realpath(os.path.join(root, posixpath.dirname(name), link))
        if not _inside(root, resolved):
            raise UnsafeMember(f"{name!r}: symlink out of the destination")
        return
    if member.islnk():
        link = member.linkname
        if not link or os.path.isabs(link) or ".." in link.split("/"):
            raise UnsafeMember(f"{name!r}: hard link out of the destination")
        if not _inside(root, os.path.realpath(os.path.join(root, link))):
            raise UnsafeMember(f"{name!r}: hard link out of the destination")
        return
    raise UnsafeMember(f"{name!r}: special file (device, FIFO or other) refused")


def _safe_mode(member: tarfile.TarInfo) -> int:
    mode = member.mode & 0o755  # no setuid/setgid/sticky, no group/other write
    if member.isdir():
        return mode | 0o700
    mode |= 0o600
    if not mode & 0o100:
        mode &= ~0o011  # executable for others only if for the owner (as the data filter)
    return mode
