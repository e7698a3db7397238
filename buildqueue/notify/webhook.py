"""One webhook delivery attempt: a signed JSON POST (rq retries it: notify/notifier.py).

Signature: `X-Gitserve-Signature: sha256=<hex HMAC-SHA256 of the raw body>` keyed with the
repo's `webhook` secret, so a receiver can tell a real notification from a forgery (README
shows the check). Worth retrying: network errors, timeouts and 5xx answers; a 4xx answer is
the receiver saying no, and is final. Redirects are not followed (the signed body and its
headers go to the configured URL only).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import urllib.error
import urllib.request
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
    final: bool = False  # True: another attempt cannot help (delivered, or refused for good)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, ensure_ascii=False).encode()


def post(url: str, data: bytes, *, key: str | None, event: str, delivery: str, timeout: float,
         user_agent: str) -> Outcome:
    """One POST of DATA to URL. `final` says whether another attempt could help: not after
    a 4xx (the receiver said no) or a redirect (never followed); yes after no answer or a 5xx.
    The retries themselves are rq's (notify/notifier.py)."""
    headers = {"Content-Type": "application/json", "User-Agent": user_agent,
               "X-Gitserve-Event": event, "X-Gitserve-Delivery": delivery}
    if key:
        headers[SIGNATURE_HEADER] = sign(data, key)
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            resp.read(65536)
            return Outcome(True, resp.status, 1, final=True)
    except urllib.error.HTTPError as exc:
        return Outcome(False, exc.code, 1, f"HTTP {exc.code}", final=exc.code < 500)
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        error = "timeout" if isinstance(reason, (socket.timeout, TimeoutError)) else \
            (getattr(reason, "strerror", None) or type(reason).__name__)
        return Outcome(False, None, 1, error)
