"""`deploy ps SITE` and `deploy logs SITE [TYPE] [--follow]` (SPEC §7.1): what the
supervisor reports about a site's processes, and their output, for the CLI and ssh alike.
Reads the files `gitserve sites` writes (deploy/processes.py); never talks to it."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator

from gitserve.settings import Settings

from . import processes
from .errors import DeployError
from .options import check_site_name
from .procfile import TYPE_RE
from .site import Site

TAIL_LINES = 100
FOLLOW_POLL = 0.2


def _site(settings: Settings, site: str) -> Site:
    s = Site(settings.sites_dir, check_site_name(site))
    if not s.state_file.exists():
        raise DeployError("ps", f"no site {site}")
    return s


def ps_rows(settings: Settings, site: str) -> list[dict[str, Any]]:
    s = _site(settings, site)
    live = s.live_side()
    rows = processes.read_status(settings, site)
    for row in rows:
        row["live"] = row.get("side") == live and row.get("state") != "draining"
    return sorted(rows, key=lambda r: (not r["live"], r.get("side") or "", r.get("type") or ""))


def _uptime(started: Any, now: float) -> str:
    if not started:
        return "-"
    seconds = max(0, int(now - float(started)))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_ps(site: str, rows: list[dict[str, Any]], now: float | None = None) -> str:
    """One line per process: type, side, pid, port, uptime, restarts (SPEC §7.1), state."""
    now = time.time() if now is None else now
    if not rows:
        return f"site {site}: no processes (a static site, or none running)"
    out = [f"{'TYPE':<12} {'SIDE':<10} {'PID':>7} {'PORT':>6} {'UPTIME':>7} {'RESTARTS':>8}  STATE"]
    for r in rows:
        side = f"{r.get('side')}{'*' if r.get('live') else ''}"
        state = r.get("state") or "-"
        if r.get("last_exit") is not None and state != "running":
            state += f" (exit {r['last_exit']})"
        out.append(f"{r.get('type', '-'):<12} {side:<10} {r.get('pid') or '-':>7} {r.get('port') or '-':>6} "
                   f"{_uptime(r.get('started'), now):>7} {r.get('restarts', 0):>8}  {state}")
    out.append("* live side")
    return "\n".join(out)


def _matches(line: str, kind: str | None) -> bool:
    if kind is None:
        return True
    parts = line.split(" ", 3)  # TIME SIDE TYPE[PID]: text
    return len(parts) > 2 and parts[2].split("[", 1)[0] == kind


def log_lines(settings: Settings, site: str, kind: str | None = None,
              lines: int = TAIL_LINES) -> list[str]:
    _site(settings, site)
    if kind is not None and not TYPE_RE.match(kind):
        raise DeployError("logs", f"invalid process type {kind!r}")
    path = processes.log_file(settings, site)
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4 * 1024 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return []
    found = [ln for ln in text.splitlines() if _matches(ln, kind)]
    return found[-lines:]


def follow(settings: Settings, site: str, kind: str | None, stop: Callable[[], bool]
           ) -> Iterator[str]:
    """Lines appended to the site's process log from now on, until STOP() (a closed
    channel, Ctrl-C); follows a rotation."""
    path = processes.log_file(settings, site)
    fh = None
    pending = b""
    try:
        while not stop():
            if fh is None:
                try:
                    fh = open(path, "rb")
                    fh.seek(0, os.SEEK_END)
                    inode = os.fstat(fh.fileno()).st_ino
                except OSError:
                    time.sleep(FOLLOW_POLL)
                    continue
            chunk = fh.read()
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    line = raw.decode(errors="replace")
                    if _matches(line, kind):
                        yield line
                continue
            try:
                if os.stat(path).st_ino != inode:  # rotated: read the new file from its start
                    fh.close()
                    fh = open(path, "rb")
                    inode = os.fstat(fh.fileno()).st_ino
                    continue
            except OSError:
                pass
            time.sleep(FOLLOW_POLL)
    finally:
        if fh is not None:
            fh.close()
