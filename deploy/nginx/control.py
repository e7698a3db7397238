"""Driving nginx as a process: `nginx -t`, reloads, the embedded master's start and stop,
its error log. The embedded master is a daemon (it outlives whoever started it); `gitserve
sites` (deploy/supervisor.py) keeps it running, `gitserve serve` never stops it.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

from gitserve import procscan
from gitserve.settings import Settings

from .paths import (NginxError, error_log, is_embedded, lock, main_conf, pid_file, prefix,
                    sites_conf_dir, write_main_conf)

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 30.0
# "2026/11/26 14:47:45 [emerg] 25114#25114: bind() to ... failed" -> level, message
_LOG_LINE = re.compile(r"^\S+ \S+ \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*)$")


def binary(settings: Settings) -> str:
    configured = settings.deploy.nginx_binary
    if configured:
        if not os.access(configured, os.X_OK):
            raise NginxError(f"[deploy] nginx_binary {configured} is not an executable file")
        return configured
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise NginxError("nginx not found on PATH; install it or set [deploy] nginx_binary")


def _embedded_argv(settings: Settings) -> list[str]:
    return [binary(settings), "-p", f"{prefix(settings)}/", "-c", str(main_conf(settings)),
            "-e", str(error_log(settings))]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT)
    except FileNotFoundError as exc:
        raise NginxError(f"{argv[0]}: not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise NginxError(f"{shlex.join(argv)} did not finish in {COMMAND_TIMEOUT:.0f}s") from exc


def _nginx_output(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    bad = [ln for ln in lines if "[emerg]" in ln or "[alert]" in ln or "[crit]" in ln
           or "failed" in ln or "error" in ln.lower()]
    return "; ".join(bad or lines) or f"exit status {proc.returncode}"


def running_pid(settings: Settings) -> int | None:
    """The embedded master's pid if it is alive (a stale pid file from a crash is ignored)."""
    try:
        pid = int(pid_file(settings).read_text().strip())
    except (OSError, ValueError):
        return None
    if not procscan.alive(pid):
        return None
    return pid if b"nginx" in procscan.cmdline(pid) else None


# --- test / reload ---------------------------------------------------------------
def test(settings: Settings) -> None:
    """`nginx -t` on the whole config that the next reload will load."""
    if is_embedded(settings):
        write_main_conf(settings)
        argv = _embedded_argv(settings) + ["-t", "-q"]
    elif settings.deploy.test_command:
        argv = shlex.split(settings.deploy.test_command)
    else:
        argv = [binary(settings), "-t", "-q"]
    proc = _run(argv)
    if proc.returncode != 0:
        raise NginxError(_nginx_output(proc))


@dataclass
class Reload:
    """What reload() did; OLD_WORKERS are the embedded master's workers before the signal."""

    how: str
    old_workers: frozenset[int] = frozenset()

    def old_workers_stopped_accepting(self) -> bool:
        """nginx starts the new workers before it tells the old ones to quit, so for a moment
        both accept connections. An old worker retitles itself "shutting down" when it closes
        its listening sockets: from then on only the new config answers."""
        for pid in self.old_workers:
            cmdline = procscan.cmdline(pid)
            if cmdline and b"shutting down" not in cmdline and not procscan.is_zombie(pid):
                return False
        return True

    def old_workers_alive(self) -> list[int]:
        """The old workers still running: they finish the requests they hold (to a drained
        side, too) before they exit."""
        return sorted(pid for pid in self.old_workers
                      if b"worker process" in procscan.cmdline(pid) and procscan.alive(pid))


def _workers(master: int) -> frozenset[int]:
    return frozenset(procscan.children(master))


def reload(settings: Settings) -> Reload:
    """Make nginx load the current files. Embedded nginx that is not running is started
    (a site deploys with no setup)."""
    if not is_embedded(settings):
        argv = (shlex.split(settings.deploy.reload_command) if settings.deploy.reload_command
                else [binary(settings), "-s", "reload"])
        proc = _run(argv)
        if proc.returncode != 0:
            raise NginxError(f"{shlex.join(argv)}: {_nginx_output(proc)}")
        return Reload(shlex.join(argv))
    pid = running_pid(settings)
    if pid is None:
        pid = _start(settings)
        return Reload(f"started embedded nginx (pid {pid})")
    before = _workers(pid)
    os.kill(pid, signal.SIGHUP)
    return Reload(f"reloaded embedded nginx (pid {pid})", before)


def error_log_tail(settings: Settings, since: int = 0, lines: int = 3,
                   about: tuple[str, ...] = ()) -> str:
    """The last error lines nginx logged after byte offset SINCE (why a reload did not apply),
    only those naming one of ABOUT if given: a refused reload of another site, or the bind
    retries nginx keeps logging after one, must not fail this one."""
    try:
        with open(error_log(settings), "rb") as fh:
            fh.seek(since)
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    found: list[str] = []
    for ln in text.splitlines():
        m = _LOG_LINE.match(ln)
        if (m and m.group(1) in ("emerg", "alert", "crit") and m.group(2) not in found
                and (not about or any(word in m.group(2) for word in about))):
            found.append(m.group(2))
    return "; ".join(found[-lines:])


def error_log_size(settings: Settings) -> int:
    try:
        return error_log(settings).stat().st_size
    except OSError:
        return 0


# --- embedded start / stop -----------------------------------------------------------
def _start(settings: Settings, timeout: float = 10.0) -> int:
    write_main_conf(settings)
    proc = _run(_embedded_argv(settings))  # daemon on: returns once the master forked
    if proc.returncode != 0:
        raise NginxError(f"embedded nginx did not start: {_nginx_output(proc)}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = running_pid(settings)
        if pid is not None:
            return pid
        time.sleep(0.02)
    raise NginxError(f"embedded nginx did not write {pid_file(settings)} in {timeout:.0f}s")


@dataclass
class EmbeddedNginx:
    """Handle `gitserve serve` keeps to stop the nginx it started (or adopted)."""

    settings: Settings
    pid: int

    def stop(self, timeout: float = 10.0) -> None:
        stop_embedded(self.settings, timeout)


def start_embedded(settings: Settings) -> EmbeddedNginx:
    """Start the embedded nginx serving every site's current live side. One left running by
    a crashed server is adopted and reloaded instead of failing on its ports."""
    sites_conf_dir(settings).mkdir(parents=True, exist_ok=True)
    with lock(settings):  # a deploy may be writing its site config right now
        test(settings)
        pid = running_pid(settings)
        if pid is not None:
            os.kill(pid, signal.SIGHUP)
            return EmbeddedNginx(settings, pid)
        return EmbeddedNginx(settings, _start(settings))


def stop_embedded(settings: Settings, timeout: float = 10.0) -> bool:
    """Graceful stop (SIGQUIT: in-flight requests finish), SIGTERM then SIGKILL if it hangs."""
    pid = running_pid(settings)
    if pid is None:
        return False
    for sig, wait in ((signal.SIGQUIT, timeout), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.02)
    return not _alive(pid)


def _alive(pid: int) -> bool:
    return procscan.alive(pid)
