"""Driving nginx: the embedded unprivileged server under HOME/nginx, or a system nginx.

Embedded mode (default): gitserve writes HOME/nginx/nginx.conf (own prefix, pid file,
error log, temp paths) that includes HOME/nginx/sites/*.conf, and signals the master by
its pid file. System mode: site configs go to `[deploy] conf_dir`, which the system
nginx.conf includes, and `[deploy] reload_command` reloads it.

Conf writes, `nginx -t` and reloads of all sites share one lock: `nginx -t` reads every
site's file, so one site's half-tested config must never be seen by another site's reload.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from gitserve.errors import GitserveError
from gitserve.fsutil import atomic_write, locked
from gitserve.settings import Settings

from .render import render_builtin

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 30.0
# "2026/11/26 14:47:45 [emerg] 25114#25114: bind() to ... failed" -> level, message
_LOG_LINE = re.compile(r"^\S+ \S+ \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*)$")
_MIME_CANDIDATES = ("/etc/nginx/mime.types", "/usr/local/etc/nginx/mime.types",
                    "/usr/local/nginx/conf/mime.types", "/opt/homebrew/etc/nginx/mime.types")


class NginxError(GitserveError):
    """nginx refused a config, could not be started, or did not reload."""


def is_embedded(settings: Settings) -> bool:
    mode = settings.deploy.nginx
    if mode not in ("embedded", "system"):
        raise NginxError(f'[deploy] nginx = {mode!r}: must be "embedded" or "system"')
    return mode == "embedded"


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


# --- layout -----------------------------------------------------------------
def prefix(settings: Settings) -> Path:
    return settings.home / "nginx"


def main_conf(settings: Settings) -> Path:
    return prefix(settings) / "nginx.conf"


def pid_file(settings: Settings) -> Path:
    return prefix(settings) / "nginx.pid"


def error_log(settings: Settings) -> Path:
    return prefix(settings) / "logs" / "error.log"


def sites_conf_dir(settings: Settings) -> Path:
    if is_embedded(settings):
        return prefix(settings) / "sites"
    if not settings.deploy.conf_dir:
        raise NginxError('[deploy] conf_dir must be set when nginx = "system"')
    return Path(settings.deploy.conf_dir)


def site_conf(settings: Settings, site: str) -> Path:
    return sites_conf_dir(settings) / f"{site}.conf"


@contextmanager
def lock(settings: Settings) -> Iterator[None]:
    with locked(settings.sites_dir / ".nginx.lock"):
        yield


# --- embedded main config -----------------------------------------------------
def _worker_user(settings: Settings) -> str | None:
    """As root, nginx workers run as `[builds] sandbox_user` (never root: a worker serves
    files a push wrote). Releases are published world-readable under directories
    _open_for_workers makes traversable. As anyone else nginx cannot switch users at all."""
    if os.geteuid() != 0:
        return None
    name = getattr(settings.builds, "sandbox_user", "") or "nobody"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise NginxError(f"[builds] sandbox_user {name!r} (the nginx worker user) does not exist") from None
    if entry.pw_uid == 0:
        raise NginxError(f"[builds] sandbox_user {name!r} is root: nginx workers never run as root")
    grp_name = _group_name(entry.pw_gid)
    return f"{name} {grp_name}" if grp_name else name


def _group_name(gid: int) -> str | None:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def _searchable_by(path: Path, uid: int, gid: int) -> bool:
    st = os.stat(path)
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid == gid:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def _open_for_workers(settings: Settings) -> None:
    """As root, the unprivileged workers must reach HOME/sites/SITE/live/... and write their
    temp files: HOME, HOME/sites and HOME/nginx get search permission for others (not
    listing: their other entries keep their modes) and HOME/nginx/tmp becomes theirs. A
    directory above HOME that they cannot search is the admin's to open: refused loudly."""
    if os.geteuid() != 0:
        return
    name = getattr(settings.builds, "sandbox_user", "") or "nobody"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return  # _worker_user says so
    home = settings.home.resolve()
    for parent in reversed(home.parents):
        if not _searchable_by(parent, entry.pw_uid, entry.pw_gid):
            raise NginxError(f"nginx workers run as {name}, who cannot reach the server home: "
                             f"{parent} is not searchable (chmod o+x {parent}, or use a home "
                             "outside it)")
    for d in (home, settings.sites_dir, prefix(settings)):
        d.mkdir(parents=True, exist_ok=True)
        mode = os.stat(d).st_mode & 0o7777
        if not _searchable_by(d, entry.pw_uid, entry.pw_gid):
            os.chmod(d, mode | 0o001)
    tmp = prefix(settings) / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(tmp):
        for path in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def write_main_conf(settings: Settings) -> Path:
    base = prefix(settings)
    for sub in ("sites", "logs", "tmp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    _open_for_workers(settings)
    mime = next((p for p in _MIME_CANDIDATES if os.path.isfile(p)), None)
    text = render_builtin(
        "nginx.conf.j2",
        user=_worker_user(settings),
        workers=min(os.cpu_count() or 1, 4),
        pid_file=pid_file(settings),
        error_log=error_log(settings),
        access_log=base / "logs" / "access.log",
        tmp_dir=base / "tmp",
        sites_dir=base / "sites",
        mime_types=mime,
    )
    path = main_conf(settings)
    atomic_write(path, text)
    return path


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
    try:
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (ProcessLookupError, PermissionError, FileNotFoundError):
        return None
    return pid if b"nginx" in cmdline else None


# --- test / reload ---------------------------------------------------------------
_LISTEN = re.compile(r"(?:^|[\s;{])listen\s+(?:\S*:)?(\d+)\b")


def listen_ports(conf: str) -> set[int]:
    return {int(p) for p in _LISTEN.findall(conf)}


def ports_taken(listens: list[tuple[str, int]], current_conf: str | None) -> list[int]:
    """Ports among LISTENS that another program holds, so the reload would fail. Ports in
    CURRENT_CONF are nginx's own already (reloads inherit them) and are not probed. Only
    meaningful for the embedded nginx: a system nginx shares ports across its sites."""
    import socket

    own = listen_ports(current_conf or "")
    taken = []
    for host, port in listens:
        if port in own:
            continue
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx binds
            try:
                sock.bind((host.strip("[]") if host not in ("", "*") else "", port))
            except OSError:
                taken.append(port)
    return taken

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
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue  # gone
            if cmdline and b"shutting down" not in cmdline and not _is_zombie(pid):
                return False
        return True


def _workers(master: int) -> frozenset[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(master):
            found.add(int(entry.name))
    return frozenset(found)


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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class NginxService:
    """The embedded nginx as a `gitserve serve` service (see gitserve.cli.serve).

    Started only when some site has a config (a server with no site runs no nginx; the
    first deploy starts it); a missing nginx or a site whose port is taken costs the
    sites, never the git server, so start() warns instead of raising. stop() stops the
    embedded nginx whoever started it (a deploy worker may have)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.summary = ""  # one line `gitserve serve` shows once started ("" = nothing to say)

    def start(self) -> None:
        confs = site_confs(self.settings)
        if not confs:
            return
        try:
            handle = start_embedded(self.settings)
            self.summary = f"embedded nginx serving {len(confs)} site(s) (pid {handle.pid})"
            log.info("%s", self.summary)
        except NginxError as exc:
            log.warning("embedded nginx not started: %s", exc)

    def stop(self) -> None:
        stop_embedded(self.settings)


def site_confs(settings: Settings) -> list[Path]:
    """The site configs the embedded nginx serves; none means it need not run."""
    conf_dir = sites_conf_dir(settings)
    return sorted(conf_dir.glob("*.conf")) if conf_dir.is_dir() else []


def services(settings: Settings) -> list[NginxService]:
    """What `gitserve serve` runs for deploys: the embedded nginx, or nothing for a system one."""
    try:
        return [NginxService(settings)] if is_embedded(settings) else []
    except NginxError as exc:
        log.warning("deploys disabled: %s", exc)
        return []
