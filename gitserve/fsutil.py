"""Small file-system helpers shared by modules that write files other processes read.

Every file the server rewrites in place (settings, configs, secrets, sidecars, state) goes
through `atomic_write`, and every cross-process lock through `locked`/`try_flock`: one place
to get temp names, permissions, fsync and flock semantics right.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def atomic_write(target: Path | str, data: str | bytes, mode: int = 0o644,
                 durable: bool = False) -> None:
    """Replace TARGET whole: readers (every connection reads gl-perms, description...) see the
    old or the new content, never half a file; concurrent writers never share a temp name
    (mkstemp), and the temp file has MODE from its creation (0600 secrets are never briefly
    world-readable). DURABLE also fsyncs the file and its directory, for state that must
    survive a power cut (a deploy's record of what is live)."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
        if durable:
            fsync_dir(target.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(path: Path | str) -> None:
    """Make a rename or unlink in PATH durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def try_flock(fd: int) -> bool:
    """Take an exclusive flock on FD without waiting; False if another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


@contextmanager
def locked(path: Path | str, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on PATH (created if missing). The kernel drops it when the holder
    dies, so a crashed worker never leaves a lock behind. With WAIT off, yields False at once
    when someone else holds it (and True when this caller got it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if wait:
            fcntl.flock(fd, fcntl.LOCK_EX)
        elif not try_flock(fd):
            yield False
            return
        yield True
    finally:
        os.close(fd)
