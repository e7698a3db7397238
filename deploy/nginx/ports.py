"""Ports: which ones a site config listens on, which of those another program holds, and
a free loopback port for a site's process (SPEC §7.1: PORT, a free port per process)."""

from __future__ import annotations

import re
import socket

_LISTEN = re.compile(r"(?:^|[\s;{])listen\s+(?:\S*:)?(\d+)\b")


def listen_ports(conf: str) -> set[int]:
    return {int(p) for p in _LISTEN.findall(conf)}


def ports_taken(listens: list[tuple[str, int]], current_conf: str | None) -> list[int]:
    """Ports among LISTENS that another program holds, so the reload would fail. Ports in
    CURRENT_CONF are nginx's own already (reloads inherit them) and are not probed. Only
    meaningful for the embedded nginx: a system nginx shares ports across its sites."""
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


def free_port(avoid: set[int] = frozenset()) -> int:  # type: ignore[assignment]
    """A port on 127.0.0.1 nobody listens on now, not in AVOID (ports handed out already
    but not yet bound by their process)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
    raise OSError("no free port on 127.0.0.1")
