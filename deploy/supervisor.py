"""`gitserve sites`: the long-running supervisor of the embedded nginx and every site's
processes (SPEC §7.1), so that sites outlive `gitserve serve`.

One per home: it holds HOME/run/sites.lock (flock) for its whole life and writes its pid
there (deploy/sitesctl.py reads it). Every TICK seconds, and at once on SIGHUP, it makes
what runs match what should run:
- the embedded nginx runs whenever a site config exists (a master that died is started
  again; one left by an earlier supervisor is adopted, never restarted: a daemon master
  outlives us, so restarting or upgrading the supervisor costs no request);
- each keeper (deploy/processes.py: the sites' Procfile processes) reconciles its part.
SIGTERM/SIGINT stop everything it runs, nginx included: stopping the sites service stops
the sites (as `systemctl stop gitserve-sites` must); `gitserve serve` never sends it.
SIGUSR2 hands over: it exits and leaves nginx and every process running (each process has
its own keeper, deploy/keeper.py), for the next supervisor (an upgrade: `systemctl reload
gitserve-sites`) to adopt; a supervisor killed outright leaves them the same way.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any, Protocol

from gitserve.errors import GitserveError
from gitserve.fsutil import try_flock
from gitserve.settings import Settings
from gitserve.sigevent import SignalEvent

from . import nginx, sitesctl

log = logging.getLogger("gitserve.sites")

TICK = 0.5


class Keeper(Protocol):
    def reconcile(self) -> None: ...

    def stop(self) -> None: ...


def _hand_over(keeper: Keeper) -> None:
    """A keeper whose charges outlive the supervisor (ProcessKeeper) lets them be."""
    getattr(keeper, "hand_over", lambda: None)()


class SupervisorError(GitserveError):
    pass


class NginxKeeper:
    """Keeps the embedded nginx master running while some site config exists."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.last_error = ""

    def reconcile(self) -> None:
        try:
            if not nginx.is_embedded(self.settings) or not nginx.site_confs(self.settings):
                return
            if nginx.running_pid(self.settings) is not None:
                return
            handle = nginx.start_embedded(self.settings)
            log.info("embedded nginx started (pid %s)", handle.pid)
            self.last_error = ""
        except GitserveError as exc:
            if str(exc) != self.last_error:  # say it once, keep trying
                log.warning("embedded nginx not started: %s", exc)
                self.last_error = str(exc)

    def stop(self) -> None:
        try:
            if nginx.is_embedded(self.settings):
                nginx.stop_embedded(self.settings)
        except GitserveError as exc:
            log.warning("stopping nginx: %s", exc)


class Supervisor:
    def __init__(self, settings: Settings, keepers: list[Keeper]) -> None:
        self.settings = settings
        self.keepers = keepers
        # set by signal handlers: never threading.Event, whose set() can deadlock in one
        self.wakeup = SignalEvent()
        self.stopping = SignalEvent()
        self.handing_over = SignalEvent()
        self._lock_fd: int | None = None

    def acquire(self) -> None:
        path = sitesctl.lock_file(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if not try_flock(fd):
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SupervisorError(f"gitserve sites already runs on {self.settings.home} (pid {other})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        sitesctl.state_dir(self.settings).mkdir(parents=True, exist_ok=True, mode=0o700)

    def release(self) -> None:
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)  # the flock goes with it
            self._lock_fd = None

    def handle_signals(self) -> None:
        def on_stop(_signum: int, _frame: Any) -> None:
            self.stopping.set()
            self.wakeup.set()

        def on_hup(_signum: int, _frame: Any) -> None:
            self.wakeup.set()

        def on_hand_over(_signum: int, _frame: Any) -> None:
            self.handing_over.set()
            self.stopping.set()
            self.wakeup.set()

        signal.signal(signal.SIGUSR2, on_hand_over)
        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def tick(self) -> None:
        for keeper in self.keepers:
            try:
                keeper.reconcile()
            except Exception:  # noqa: BLE001 - one site's trouble must not stop the others
                log.exception("%s failed", type(keeper).__name__)

    def run(self) -> None:
        log.info("gitserve sites running (pid %s) on %s", os.getpid(), self.settings.home)
        crashed = True
        try:
            while not self.stopping.is_set():
                if not self.settings.home.is_dir():
                    log.warning("%s is gone: stopping", self.settings.home)
                    break
                self.wakeup.clear()
                self.tick()
                self.wakeup.wait(TICK)
            crashed = False
        finally:
            # only a stop asked for stops the sites: a supervisor that crashed leaves them
            # running, as one killed does, for the next one to adopt
            handing_over = self.handing_over.is_set() or crashed
            for keeper in reversed(self.keepers):
                try:
                    _hand_over(keeper) if handing_over else keeper.stop()
                except Exception:  # noqa: BLE001 - stop the rest regardless
                    log.exception("stopping %s", type(keeper).__name__)
            self.release()
            log.info("gitserve sites %s", "stopped" if not handing_over else
                     ("crashed" if crashed else "handed over") + ": nginx and the processes keep running")


class RenewKeeper:
    """deploy.tls = acme: twice a day, renew certificates within 30 days of expiry (and order
    one a failed deploy-time order left missing)."""

    EVERY = 12 * 3600.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.next_run = time.monotonic() + 60.0  # not in the way of the first start

    def reconcile(self) -> None:
        if time.monotonic() < self.next_run:
            return
        self.next_run = time.monotonic() + self.EVERY
        from .bluegreen import renew_tls
        from .site import Site, all_sites

        for name in all_sites(self.settings.sites_dir):
            opts = Site(self.settings.sites_dir, name).load_state().get("options") or {}
            if str(opts.get("deploy.tls", "")).strip() == "acme":
                try:
                    renew_tls(self.settings, name, log=log.info)
                except GitserveError as exc:
                    log.warning("tls %s: %s", name, exc)

    def stop(self) -> None:
        pass


def keepers(settings: Settings) -> list[Keeper]:
    """nginx first (a process keeper's first start must find it running), then processes."""
    from .processes import ProcessKeeper

    return [NginxKeeper(settings), ProcessKeeper(settings), RenewKeeper(settings)]


def main(settings: Settings) -> None:
    sup = Supervisor(settings, keepers(settings))
    # handlers before the lock: a client sees us running once we hold it and may SIGHUP us
    # at once (start_side wakes the supervisor it just started); SIGHUP's default kills
    sup.handle_signals()
    sup.acquire()
    started = time.monotonic()
    sup.tick()
    log.info("first pass in %.0f ms", (time.monotonic() - started) * 1000)
    sup.run()
