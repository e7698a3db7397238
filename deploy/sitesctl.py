"""Talking to `gitserve sites` from outside it: is it running, start it, wake it, stop it.

The supervisor and its clients (serve, deploy jobs, the CLI, ssh commands) share files,
not a socket: HOME/run/sites.lock is flocked by the running supervisor (the kernel drops
the lock when it dies, so a crash never leaves a "running" marker behind) and holds its
pid; what each site should run is written under HOME/run/sites/ and the supervisor is
woken with SIGHUP; what runs is read back from the status files it writes. Why files:
the desired state outlives both sides (a restarted or upgraded supervisor reads it back,
a new serve needs no handshake to re-attach), every writer already works on HOME, and
there is no protocol to keep compatible across an upgrade.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gitserve import procscan
from gitserve.fsutil import try_flock
from gitserve.settings import Settings

from .errors import DeployError

log = logging.getLogger(__name__)

START_TIMEOUT = 15.0


def lock_file(settings: Settings) -> Path:
    return settings.run_dir / "sites.lock"


def state_dir(settings: Settings) -> Path:
    """HOME/run/sites: desired process sets (with secrets: 0700, never under HOME/sites,
    which the nginx workers may traverse) and the supervisor's status files."""
    return settings.run_dir / "sites"


def running_pid(settings: Settings) -> int | None:
    """The supervisor's pid when one runs on this home (it holds the lock), else None."""
    path = lock_file(settings)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if try_flock(fd):
            return None  # nobody holds it (our lock goes away with the close below)
        raw = os.pread(fd, 32, 0).decode(errors="replace").strip()
    finally:
        os.close(fd)
    return int(raw) if raw.isdigit() else None


def _signal(settings: Settings, signum: int) -> int | None:
    """SIGNUM to this home's `gitserve sites`: its pid; 0 if it ended meanwhile; None if
    none ran."""
    pid = running_pid(settings)
    if pid is None:
        return None
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return 0
    return pid


def wake(settings: Settings) -> bool:
    """SIGHUP: read the desired state now instead of at the next tick."""
    return bool(_signal(settings, signal.SIGHUP))


def ensure_running(settings: Settings, timeout: float = START_TIMEOUT) -> tuple[int, bool]:
    """(pid, started): start `gitserve sites` for this home unless it runs. It runs in its
    own session with no parent-death signal, so whoever started it (serve, a deploy job)
    may exit or be killed without taking the sites along."""
    pid = running_pid(settings)
    if pid is not None:
        return pid, False
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    out = open(settings.logs_dir / "sites-console.log", "ab")  # crashes only; the log is sites.log
    # the same code as its starter, wherever that was imported from (a checkout, a venv)
    code_root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, PYTHONPATH=code_root + (os.pathsep + path if path else ""))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gitserve", "--home", str(settings.home), "sites"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            close_fds=True, cwd="/", env=env)
    finally:
        out.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = running_pid(settings)
        if pid is not None:
            return pid, True
        if proc.poll() is not None:
            pid = running_pid(settings)  # lost a race with another starter: theirs runs
            if pid is not None:
                return pid, False
            raise DeployError("sites", f"gitserve sites exited at start (status {proc.returncode}); "
                              f"see {settings.logs_dir / 'sites.log'}")
        time.sleep(0.02)
    raise DeployError("sites", f"gitserve sites did not start in {timeout:.0f}s; "
                      f"see {settings.logs_dir / 'sites.log'}")


def stop(settings: Settings, timeout: float = 20.0) -> bool:
    """Stop the supervisor (and with it nginx and every site process); True if one ran."""
    pid = _signal(settings, signal.SIGTERM)
    if not pid:
        return pid is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running_pid(settings) is not None:
        time.sleep(0.02)
    if running_pid(settings) is not None and procscan.alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def has_sites(settings: Settings) -> bool:
    from . import nginx
    from .site import all_sites

    try:
        confs = nginx.site_confs(settings) if nginx.is_embedded(settings) else []
    except nginx.NginxError:
        confs = []
    return bool(confs) or bool(all_sites(settings.sites_dir))


class SitesService:
    """`gitserve serve`'s handle on the sites: start() starts `gitserve sites` when a site
    exists and none runs (or re-attaches to the running one); stop() does nothing: the
    sites outlive serve (SPEC §7.1). A failure costs the sites, never the git server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.summary = ""

    def start(self) -> None:
        if not has_sites(self.settings):
            return
        try:
            pid, started = ensure_running(self.settings)
        except DeployError as exc:
            log.warning("sites not started: %s", exc.message)
            self.summary = f"WARNING: sites not started: {exc.message}"
            return
        from .site import all_sites

        count = len(all_sites(self.settings.sites_dir))
        how = "started" if started else "attached to"
        self.summary = f"{how} gitserve sites (pid {pid}) serving {count} site(s)"
        log.info("%s", self.summary)

    def stop(self) -> None:
        """Nothing: `gitserve sites` keeps serving while serve is down or upgraded."""


def services(settings: Settings) -> list[SitesService]:
    """What `gitserve serve` runs for deploys: the sites supervisor's handle (embedded nginx
    or not: site processes need it either way)."""
    return [SitesService(settings)]
