"""Where the embedded nginx lives and who may read it: HOME/nginx, its main config, and the
permissions an unprivileged nginx worker needs to reach the sites.

Embedded mode (default): gitserve writes HOME/nginx/nginx.conf (own prefix, pid file,
error log, temp paths) that includes HOME/nginx/sites/*.conf. System mode: site configs go
to `[deploy] conf_dir`, which the system nginx.conf includes.

Conf writes, `nginx -t` and reloads of all sites share one lock: `nginx -t` reads every
site's file, so one site's half-tested config must never be seen by another site's reload.
"""

from __future__ import annotations

import grp
import os
import pwd
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from gitserve.errors import GitserveError
from gitserve.fsutil import atomic_write, locked
from gitserve.settings import Settings

from ..render import render_builtin

_MIME_CANDIDATES = ("/etc/nginx/mime.types", "/usr/local/etc/nginx/mime.types",
                    "/usr/local/nginx/conf/mime.types", "/opt/homebrew/etc/nginx/mime.types")


class NginxError(GitserveError):
    """nginx refused a config, could not be started, or did not reload."""


def is_embedded(settings: Settings) -> bool:
    mode = settings.deploy.nginx
    if mode not in ("embedded", "system"):
        raise NginxError(f'[deploy] nginx = {mode!r}: must be "embedded" or "system"')
    return mode == "embedded"


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


def site_confs(settings: Settings) -> list[Path]:
    """The site configs the embedded nginx serves; none means it need not run."""
    conf_dir = sites_conf_dir(settings)
    return sorted(conf_dir.glob("*.conf")) if conf_dir.is_dir() else []


@contextmanager
def lock(settings: Settings) -> Iterator[None]:
    with locked(settings.sites_dir / ".nginx.lock"):
        yield


# --- who the workers are, and what they must reach ------------------------------------
def _worker_entry(settings: Settings) -> pwd.struct_passwd | None:
    """As root, nginx workers run as `[builds] sandbox_user` (never root: a worker serves
    files a push wrote). As anyone else nginx cannot switch users at all: None."""
    if os.geteuid() != 0:
        return None
    name = getattr(settings.builds, "sandbox_user", "") or "nobody"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise NginxError(f"[builds] sandbox_user {name!r} (the nginx worker user) does not exist") from None
    if entry.pw_uid == 0:
        raise NginxError(f"[builds] sandbox_user {name!r} is root: nginx workers never run as root")
    return entry


def worker_user(settings: Settings) -> str | None:
    """The nginx `user` directive's value, or None (not root)."""
    entry = _worker_entry(settings)
    if entry is None:
        return None
    try:
        return f"{entry.pw_name} {grp.getgrgid(entry.pw_gid).gr_name}"
    except KeyError:
        return entry.pw_name


def _searchable_by(path: Path, uid: int, gid: int) -> bool:
    st = os.stat(path)
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid == gid:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def unreachable_parent(settings: Settings) -> Path | None:
    """The first directory above HOME the nginx workers cannot search (None: all fine, or
    not root). The root default home is chosen so that this is None (settings.py)."""
    entry = _worker_entry(settings)
    if entry is None:
        return None
    for parent in reversed(settings.home.resolve().parents):
        if not _searchable_by(parent, entry.pw_uid, entry.pw_gid):
            return parent
    return None


def open_for_workers(settings: Settings) -> None:
    """As root, the unprivileged workers must reach HOME/sites/SITE/live/... and write their
    temp files: HOME, HOME/sites and HOME/nginx get search permission for others (not
    listing: their other entries keep their modes) and HOME/nginx/tmp becomes theirs. A
    directory above HOME that they cannot search is the admin's to open: refused loudly."""
    entry = _worker_entry(settings)
    if entry is None:
        return
    blocked = unreachable_parent(settings)
    if blocked is not None:
        raise NginxError(f"nginx workers run as {entry.pw_name}, who cannot reach the server home: "
                         f"{blocked} is not searchable (chmod o+x {blocked}, or use a home "
                         "outside it)")
    home = settings.home.resolve()
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
    open_for_workers(settings)
    mime = next((p for p in _MIME_CANDIDATES if os.path.isfile(p)), None)
    text = render_builtin(
        "nginx.conf.j2",
        user=worker_user(settings),
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
