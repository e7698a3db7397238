"""Copy build output into a new, immutable release directory.

The copy goes to a hidden temporary name and is renamed into place only when complete,
so no slot can ever point at a half-copied release. The output is read through file
descriptors (deploy.safetree: O_NOFOLLOW at every step, hard links out of the tree
refused), and symlinks are kept only when they stay inside it, checked once more on the
finished copy, which nobody but the worker can write: one pointing at /etc/passwd would
otherwise be served.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import safetree
from .errors import DeployError


def publish(src: Path, releases_dir: Path, release: str) -> tuple[int, int]:
    """Copy SRC to RELEASES_DIR/RELEASE; returns (files, bytes)."""
    try:
        src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise DeployError("publish", f"build output {src.name or src} is not a directory "
                          "(does the build write deploy.dir?)") from None
    try:
        dest = releases_dir / release
        if dest.exists():
            raise DeployError("publish", f"release {release} already exists")
        tmp = releases_dir / f".{release}.{os.getpid()}.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            files, size = safetree.copy_into(src_fd, tmp)
            safetree.check_links_resolve_inside(tmp)
        except DeployError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DeployError("publish", f"copying the build output: {exc}") from exc
    finally:
        os.close(src_fd)
    os.rename(tmp, dest)
    return files, size


def remove_release(releases_dir: Path, release: str) -> None:
    """Delete a release: renamed away first so nothing ever sees it half-deleted."""
    path = releases_dir / release
    if not path.is_dir():
        return
    doomed = releases_dir / f".{release}.{os.getpid()}.deleting"
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def clean_partials(releases_dir: Path) -> None:
    """Leftovers of a deploy that crashed mid-copy (the lock is held, so none is in use)."""
    if not releases_dir.is_dir():
        return
    for p in releases_dir.iterdir():
        if p.name.startswith(".") and (p.name.endswith(".partial") or p.name.endswith(".deleting")):
            shutil.rmtree(p, ignore_errors=True)
