"""The per-repository upkeep lock: one repack or gc of a repository at a time.

Held by git/repack (after pushes) and upkeep (gc, `gitserve admin gc`); it lives in the git
layer so repack never imports upkeep (upkeep sits above git/ and uses it, not the reverse).
An flock dies with its process, so a killed gc never wedges the repository.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from gitserve.fsutil import locked

LOCK_NAME = "gitserve-upkeep.lock"  # in the repository's objects/ directory


@contextmanager
def repo_lock(path: Path | str, wait: bool = True) -> Iterator[bool]:
    """Exclusive upkeep lock of the repository at PATH; yields False if WAIT is off and
    someone else holds it."""
    with locked(Path(path) / "objects" / LOCK_NAME, wait=wait) as got:
        yield got
