"""The HTTP face as a `gitserve serve` service: uvicorn on its own thread and event loop.

The socket is bound in the constructor (as the SSH service does) so a taken port fails
`gitserve serve` at once with one line, and the port is known before anything starts.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any, Sequence

import uvicorn

from gitserve.errors import GitserveError
from gitserve.settings import Settings

from . import conncaps
from .app import HttpFace

log = logging.getLogger(__name__)


class ServiceError(GitserveError):
    """The HTTP face cannot start (bad listen address, port taken): one line."""


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT (or :PORT, or [v6]:PORT) -> (host, port); ServiceError when it is not one."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ServiceError(f"[http] listen must be HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class HttpService:
    def __init__(self, settings: Settings, metrics: Any, hooks: Sequence[Any] = ()) -> None:
        host, port = parse_listen(settings.http.listen)
        self.face = HttpFace(settings, metrics, hooks)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ServiceError(f"cannot listen on {settings.http.listen} (http): "
                               f"{exc.strerror or exc}") from None
        sock.listen(256)
        self.sock = sock
        self.address: tuple[str, int] = sock.getsockname()[:2]
        # log_config=None: uvicorn logs through gitserve's logging setup, not its own handlers;
        # proxy headers are ours to judge (auth.client_of, [http] trusted_proxies)
        # a header deadline and a per-address connection cap (conncaps.py)
        from .auth import trusted_set

        capped = conncaps.protocol(settings.http.header_timeout,
                                   conncaps.PerAddress(settings.http.max_connections_per_ip,
                                                       trusted_set(settings.http.trusted_proxies)))
        config = uvicorn.Config(self.face.asgi(), http=capped, log_config=None, access_log=False,
                                proxy_headers=False, server_header=False,
                                timeout_keep_alive=30, lifespan="off",
                                timeout_graceful_shutdown=5,
                                # past [server] max_connections open connections: 503 at once
                                limit_concurrency=settings.server.max_connections)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.face.observer.seed()
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except Exception:  # noqa: BLE001 - log it; the SSH side keeps serving
            log.exception("the HTTP service stopped")

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()
