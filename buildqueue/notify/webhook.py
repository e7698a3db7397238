"""One webhook delivery: a signed JSON POST, retried with exponential backoff.

Signature: `X-Gitserve-Signature: sha256=<hex HMAC-SHA256 of the raw body>` keyed with the
repo's `webhook` secret, so a receiver can tell a real notification from a forgery (README
shows the check). Retries: network errors, timeouts and 5xx answers; a 4xx answer is the
receiver saying no, and is final. Redirects are not followed (the signed body and its
headers go to the configured URL only).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SIGNATURE_HEADER = "X-Gitserve-Signature"


def sign(body: bytes, key: str) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Outcome:
    ok: bool
    status: int | None  # HTTP status (or SMTP reply code) of the last attempt; None: no answer
    attempts: int
    error: str = ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, ensure_ascii=False).encode()


def post(url: str, data: bytes, *, key: str | None, event: str, delivery: str, attempts: int,
         backoff: float, timeout: float, user_agent: str,
         sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """POST DATA to URL; up to ATTEMPTS tries, waiting BACKOFF, 2*BACKOFF, ... between them."""
    headers = {"Content-Type": "application/json", "User-Agent": user_agent,
               "X-Gitserve-Event": event, "X-Gitserve-Delivery": delivery}
    if key:
        headers[SIGNATURE_HEADER] = sign(data, key)
    status: int | None = None
    error = ""
    for attempt in range(1, attempts + 1):
        req = urllib.request.Request(url, data=data, method="POST", headers=headers)
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                resp.read(65536)
                return Outcome(True, resp.status, attempt)
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
            if exc.code < 500:
                return Outcome(False, status, attempt, error)
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            status = None
            reason = getattr(exc, "reason", exc)
            error = "timeout" if isinstance(reason, (socket.timeout, TimeoutError)) else \
                (getattr(reason, "strerror", None) or type(reason).__name__)
        if attempt < attempts:
            sleep(backoff * 2 ** (attempt - 1))
    return Outcome(False, status, attempts, error)
