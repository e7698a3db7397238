"""A run's workspace on its own size-capped filesystem (`[builds] disk`, SPEC §6).

The workspace (checkout, HOME, /tmp of the run) is a tmpfs of `disk` bytes mounted over
the run's directory, so a build that writes without end fills its own filesystem, never the
disk that holds the repositories and Redis. The mount is made in a private mount namespace
of the job's process (rq runs each job in its own forked work horse): nobody else sees it,
and it disappears with the process even when the worker is killed, so nothing is left
mounted under HOME/work.

This needs CAP_SYS_ADMIN (a root worker). A non-root worker keeps the workspace on disk;
`file_size` still bounds each file, and `capped()` says why there is no cap.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()
_private: list[str | None] = []  # [None] once this process has its own mount namespace


def _private_namespace() -> str | None:
    """Give this process its own mount namespace (once); None, or why it cannot."""
    with _lock:
        if _private:
            return _private[0]
        reason: str | None = None
        if os.geteuid() != 0:
            reason = "the worker is not root"
        elif _libc.unshare(CLONE_NEWNS) != 0:
            reason = f"unshare: {os.strerror(ctypes.get_errno())}"
        elif _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            reason = f"mount --make-rprivate /: {os.strerror(ctypes.get_errno())}"
        _private.append(reason)
        return reason


def cap(work: Path, size: int) -> str | None:
    """Mount a tmpfs of SIZE bytes (mode 0700, root's) over the empty directory WORK, in
    this process's private mount namespace. Returns None, or why the workspace stays
    uncapped (one line, for the build log)."""
    reason = _private_namespace()
    if reason is not None:
        return reason
    opts = f"size={size},mode=0700,nr_inodes={max(4096, size // 4096)}".encode()
    if _libc.mount(b"gitserve-work", str(work).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts) != 0:
        return f"mount tmpfs: {os.strerror(ctypes.get_errno())}"
    return None


def release(work: Path) -> None:
    """Unmount WORK's tmpfs (its contents go with it); nothing when it was not capped."""
    if os.path.ismount(work):
        _libc.umount2(str(work).encode(), MNT_DETACH)
