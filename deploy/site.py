"""One site's directory: releases, the blue/green slots, the live pointer, state and lock.

```
HOME/sites/SITE/releases/BUILD/   published files, never modified once published
HOME/sites/SITE/blue  -> releases/BUILD      (symlink: the slot's release)
HOME/sites/SITE/green -> releases/BUILD
HOME/sites/SITE/live  -> blue | green        (symlink: what the live server serves)
HOME/sites/SITE/state.json        release metadata and history (written atomically)
HOME/sites/SITE/.lock             flock: one deploy/rollback at a time
HOME/sites/SITE/nginx.conf.j2     optional per-site template override
```
The symlinks are the truth about what is served: they only ever change by rename(2), so
a reader (nginx resolving a request, or a crashed deploy's successor) sees either the old
or the new target, never neither. state.json only carries metadata, so a crash between a
switch and the state write can lose a history entry but never the live side.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from gitserve.fsutil import atomic_write, fsync_dir, try_flock

from .errors import DeployError
from .options import check_site_name

SIDES = ("blue", "green")
HISTORY_MAX = 200


def other_side(side: str | None) -> str:
    """The idle side; a site with nothing live starts on blue (the seed's first `Enable: blue`)."""
    return "green" if side == "blue" else "blue"


class Site:
    def __init__(self, sites_dir: Path, name: str) -> None:
        self.name = check_site_name(name)
        self.root = sites_dir / name

    # --- paths ------------------------------------------------------------
    @property
    def releases_dir(self) -> Path:
        return self.root / "releases"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def template_override(self) -> Path:
        return self.root / "nginx.conf.j2"

    @property
    def live_link(self) -> Path:
        return self.root / "live"

    def slot(self, side: str) -> Path:
        assert side in SIDES
        return self.root / side

    def release_dir(self, release: str) -> Path:
        return self.releases_dir / release

    def exists(self) -> bool:
        return self.root.is_dir()

    def ensure(self) -> None:
        self.releases_dir.mkdir(parents=True, exist_ok=True)

    # --- the symlinks -------------------------------------------------------
    def live_side(self) -> str | None:
        try:
            target = os.readlink(self.live_link)
        except OSError:
            return None
        return target if target in SIDES else None

    def slot_release(self, side: str | None) -> str | None:
        if side is None:
            return None
        try:
            target = os.readlink(self.slot(side))
        except OSError:
            return None
        name = Path(target).name
        return name if self.release_dir(name).is_dir() else None

    def releases_on_disk(self) -> list[str]:
        if not self.releases_dir.is_dir():
            return []
        return sorted(p.name for p in self.releases_dir.iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def _replace_link(self, link: Path, target: str) -> float:
        """Returns how long the rename itself took: the only moment readers could notice."""
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        os.symlink(target, tmp)
        t0 = time.perf_counter()
        os.replace(tmp, link)  # rename(2): atomic for every reader
        took = time.perf_counter() - t0
        fsync_dir(self.root)
        return took

    def point_slot(self, side: str, release: str | None) -> None:
        if release is None:
            try:
                self.slot(side).unlink()
            except FileNotFoundError:
                pass
            return
        self._replace_link(self.slot(side), f"releases/{release}")

    def point_live(self, side: str) -> float:
        """Switch what the live server reads; returns the rename's duration in seconds."""
        assert side in SIDES
        return self._replace_link(self.live_link, side)

    # --- state ------------------------------------------------------------
    def load_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise DeployError("state", f"{self.state_file}: {exc}") from exc
        data.setdefault("site", self.name)
        data.setdefault("releases", {})
        data.setdefault("deployed", [])
        data.setdefault("history", [])
        return data

    def save_state(self, state: dict[str, Any]) -> None:
        state["history"] = state["history"][-HISTORY_MAX:]
        atomic_write(self.state_file, json.dumps(state, indent=1, sort_keys=True), durable=True)

    # --- the lock -----------------------------------------------------------
    @contextmanager
    def lock(self, holder: str, timeout: float, say: Callable[[str], None]) -> Iterator[None]:
        """Hold the site's flock. The kernel drops it when the holder dies, so a crashed
        worker never blocks the next deploy; the holder line says who is waited for."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            announced = False
            while not try_flock(fd):
                if not announced:
                    who = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another deploy"
                    say(f"waiting for {who}")
                    announced = True
                if time.monotonic() > deadline:
                    raise DeployError("lock", f"site {self.name} is still locked after {timeout:.0f}s")
                time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{holder} (pid {os.getpid()})\n".encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)



def all_sites(sites_dir: Path) -> list[str]:
    if not sites_dir.is_dir():
        return []
    return sorted(p.name for p in sites_dir.iterdir() if p.is_dir() and (p / "state.json").exists())
