"""Copy build output into a new, immutable release directory.

The copy goes to a hidden temporary name and is renamed into place only when complete,
so no slot can ever point at a half-copied release. Symlinks in the output are kept only
when they stay inside it: one pointing at /etc/passwd would otherwise be served.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import DeployError


def _check_symlinks(src: Path) -> None:
    root = src.resolve()
    for dirpath, dirnames, filenames in os.walk(src):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                target = path.resolve()
                if target != root and root not in target.parents:
                    rel = path.relative_to(src)
                    raise DeployError("publish", f"{rel} is a symlink out of the build output "
                                      f"({os.readlink(path)})")


def publish(src: Path, releases_dir: Path, release: str) -> tuple[int, int]:
    """Copy SRC to RELEASES_DIR/RELEASE; returns (files, bytes)."""
    if not src.is_dir():
        raise DeployError("publish", f"build output {src.name or src} is not a directory "
                          "(does the build write deploy.dir?)")
    _check_symlinks(src)
    dest = releases_dir / release
    if dest.exists():
        raise DeployError("publish", f"release {release} already exists")
    tmp = releases_dir / f".{release}.{os.getpid()}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        shutil.copytree(src, tmp, symlinks=True)
        os.chmod(tmp, 0o755)
    except (OSError, shutil.Error) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DeployError("publish", f"copying the build output: {exc}") from exc
    files = size = 0
    for dirpath, _dirs, filenames in os.walk(tmp):
        for name in filenames:
            files += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
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
