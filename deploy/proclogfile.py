"""The writing side of a site's processes.log (HOME/run/sites/SITE/processes.log): one
`TIME SIDE TYPE[PID]: line` per line of output, secret values masked as `***`, rotated at
LOG_MAX with one old file kept. Written by every process keeper of the site (deploy/
keeper.py) and by the supervisor, each line in one O_APPEND write; the rotation is done
under an flock so two writers never rotate twice. Read by deploy/proclog.py."""

from __future__ import annotations

import fcntl
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping

LOG_MAX = 10 * 1024 * 1024
MASK = "***"


def mask_for(env: Mapping[str, Any]) -> Callable[[str], str]:
    """A function that masks every value of ENV (the repo's secrets) of 3+ characters.
    (deploy may not import buildqueue's Masker; this is the plain-text part of it.)"""
    parts = sorted({str(v) for v in env.values() if len(str(v)) >= 3}, key=len, reverse=True)
    rx = re.compile("|".join(re.escape(p) for p in parts)) if parts else None
    return (lambda text: rx.sub(MASK, text)) if rx else (lambda text: text)


class ProcessLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, side: str, kind: str, pid: int | None, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = f"{stamp} {side} {kind}[{pid or '-'}]: {text.rstrip()}\n".encode(errors="replace")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return
        try:
            if os.fstat(fd).st_size > LOG_MAX:
                fd = self._rotate(fd)
            os.write(fd, line)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _rotate(self, fd: int) -> int:
        lock = os.open(self.path.with_suffix(".log.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:  # still the big one? (another writer may have rotated while we waited)
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    os.replace(self.path, self.path.with_suffix(".log.1"))
            except FileNotFoundError:
                pass
            os.close(fd)
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        finally:
            os.close(lock)
