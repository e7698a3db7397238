"""HTTP checks against the preview server (and the live one, for tests and status).

http.client, not urllib: a proxy from the environment must never answer a local check,
and a redirect is an answer (not 200), not something to follow.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass
from typing import Callable

from .options import Listen

CONFIG_HEADER = "X-Gitserve-Config"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def get(listen: Listen, path: str, timeout: float = 5.0) -> Response:
    conn = http.client.HTTPConnection(listen.connect_host(), listen.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "gitserve-deploy-check"})
        resp = conn.getresponse()
        body = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()


def check_preview(listen: Listen, path: str, token: str | None, timeout: float,
                  give_up: Callable[[], str | None] = lambda: None) -> Response:
    """GET PATH once nginx serves the config carrying TOKEN (a reload is asynchronous: the
    old workers answer until the new ones start). Raises TimeoutError with the last reason,
    at once when GIVE_UP returns one (nginx logged that it refused the reload)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            # short tries: a port held by something that never answers must not eat the budget
            resp = get(listen, path, timeout=max(0.2, min(1.0, deadline - time.monotonic())))
            seen = resp.headers.get(CONFIG_HEADER.lower())
            if token is None or seen == token:
                return resp
            last = f"still the previous config (got {seen or 'no'} {CONFIG_HEADER})"
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        reason = give_up()
        if reason:
            raise TimeoutError(reason)
        if time.monotonic() >= deadline:
            raise TimeoutError(last)
        time.sleep(0.02)
