"""One webhook delivery attempt: a signed JSON POST (rq retries it: notify/notifier.py).

Signature: `X-Gitserve-Signature: sha256=<hex HMAC-SHA256 of the raw body>` keyed with the
repo's `webhook` secret, so a receiver can tell a real notification from a forgery (README
shows the check). Worth retrying: network errors, timeouts and 5xx answers; a 4xx answer is
the receiver saying no, and is final. Redirects are not followed (the signed body and its
headers go to the configured URL only).

Destinations: a webhook URL is written by whoever may edit the conf, and the server sends it
from inside the network the server sits in. So it never reaches a loopback, link-local
(cloud metadata at 169.254.169.254), private, unique-local, multicast or unspecified address
unless `[notify] allow_private = true`. The name is resolved once, every address checked,
and the socket connects to exactly the checked addresses (nothing, not even a SYN, goes to a
refused one), so a name that resolves to a public address once and a private one the next
time (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
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


class RefusedDestination(OSError):
    """The webhook's address is one the server must not send to."""


def refused_address(address: str) -> str | None:
    """Why ADDRESS (an IP) is not a public destination, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for what, test in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                       ("private", ip.is_private), ("multicast", ip.is_multicast),
                       ("unspecified", ip.is_unspecified), ("reserved", ip.is_reserved)):
        if test:
            return f"{ip} is a {what} address"
    return None


_DEFAULT_TIMEOUT: Any = getattr(socket, "_GLOBAL_DEFAULT_TIMEOUT")  # noqa: B009 - http.client's "not given"


def _guarded_connect(address: tuple[str, int], timeout: Any = _DEFAULT_TIMEOUT,
                     source_address: Any = None, **_: Any) -> socket.socket:
    """socket.create_connection, but to checked addresses only: the name is resolved once,
    every address it gives is checked, and the socket connects to exactly those (nothing is
    sent to a refused address, not even a SYN; a second resolution cannot differ)."""
    host, port = address
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    for *_rest, sockaddr in infos:
        why = refused_address(str(sockaddr[0]))
        if why is not None:
            raise RefusedDestination(f"destination refused: {why} ([notify] allow_private = true "
                                     "allows it)")
    last: OSError | None = None
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"no address for {host}")


class _GuardedHTTP(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connect


class _GuardedHTTPS(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connect


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: Any) -> Any:
        return self.do_open(_GuardedHTTP, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: Any) -> Any:
        return self.do_open(_GuardedHTTPS, req, context=getattr(self, "_context", None))


_OPENER = urllib.request.build_opener(_NoRedirect)
# no proxies for the guarded opener: the address checked must be the receiver's own
_GUARDED = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}), _HTTPHandler,
                                       _HTTPSHandler)


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, ensure_ascii=False).encode()


def post(url: str, data: bytes, *, signature: str | None, event: str, delivery: str,
         timeout: float, user_agent: str, allow_private: bool = False) -> Outcome:
    """One POST of DATA to URL. `final` says whether another attempt could help: not after
    a 4xx (the receiver said no), a redirect (never followed) or a destination that is not
    public (unless ALLOW_PRIVATE); yes after no answer or a 5xx. The retries themselves are
    rq's (notify/notifier.py). SIGNATURE: sign(DATA, the repo's key), made when the notice was
    (so a delivery job can only send what the server signed)."""
    opener = _OPENER if allow_private else _GUARDED
    headers = {"Content-Type": "application/json", "User-Agent": user_agent,
               "X-Gitserve-Event": event, "X-Gitserve-Delivery": delivery}
    if signature:
        headers[SIGNATURE_HEADER] = signature
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with opener.open(req, timeout=timeout) as resp:
            resp.read(65536)
            return Outcome(True, resp.status, 1, final=True)
    except urllib.error.HTTPError as exc:
        return Outcome(False, exc.code, 1, f"HTTP {exc.code}", final=exc.code < 500)
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, RefusedDestination):
            return Outcome(False, None, 1, str(reason), final=True)
        error = "timeout" if isinstance(reason, (socket.timeout, TimeoutError)) else \
            (getattr(reason, "strerror", None) or type(reason).__name__)
        return Outcome(False, None, 1, error)
