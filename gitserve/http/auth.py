"""Who is asking: client address and scheme (behind a trusted proxy), basic-auth tokens,
the session cookie, and the per-address limit on failed logins.

X-Forwarded-For/-Proto are believed only from the peers listed in `[http] trusted_proxies`:
anyone else could claim to come from anywhere, over https, and dodge the failure limit.
The failure limit follows gitserve/ssh/limits.py: failures per address in a sliding minute;
past the limit every login attempt from that address gets 429 until the minute has passed.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Callable

import anyio.to_thread
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.requests import HTTPConnection

from .logins import COOKIE, Session, Sessions
from .tokens import TokenStore

REALM = 'Basic realm="gitserve"'
ANONYMOUS = "gitweb"  # Gitolite's user for what a web browser may show without login


@dataclass
class Client:
    ip: str
    https: bool


def trusted_set(spec: str) -> frozenset[str]:
    return frozenset(p.strip() for p in spec.split(",") if p.strip())


def client_of(conn: HTTPConnection, trusted: frozenset[str]) -> Client:
    peer = conn.client.host if conn.client else "?"
    https = conn.url.scheme == "https"
    if peer in trusted:
        forwarded_for = conn.headers.get("x-forwarded-for", "")
        if forwarded_for:
            # the proxy appends the address it saw last: that one it vouches for
            peer = forwarded_for.split(",")[-1].strip() or peer
        proto = conn.headers.get("x-forwarded-proto", "")
        if proto:
            https = proto.split(",")[0].strip().lower() == "https"
    return Client(peer, https)


class FailureLimit:
    """Failed logins per address in the last minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def blocked(self, ip: str) -> bool:
        with self._lock:
            q = self._failures.get(ip)
            if not q:
                return False
            cutoff = time.monotonic() - 60
            while q and q[0] < cutoff:
                q.popleft()
            if not q:
                del self._failures[ip]
                return False
            return len(q) >= self.per_minute

    def failed(self, ip: str) -> None:
        with self._lock:
            self._failures[ip].append(time.monotonic())


class BadCredentials(Exception):
    """Basic auth given but wrong: 401 again (git's credential helper forgets it)."""


class TooManyFailures(Exception):
    """This address failed too often: 429."""


def basic_credentials(conn: HTTPConnection) -> tuple[str, str] | None:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")
    user, _, token = raw.partition(":")
    return user, token


class Authenticator:
    """HAS_KEY(user): does the keydir (admin repo at its tip) still hold a key of USER? A token
    or a web session is only as good as the key that made it: removing a user's last key
    ends both at their next use (issue 21, finding 4), in every process."""

    def __init__(self, tokens: TokenStore, sessions: Sessions, limit: FailureLimit,
                 trusted: frozenset[str], has_key: Callable[[str], bool]) -> None:
        self.tokens = tokens
        self.sessions = sessions
        self.limit = limit
        self.trusted = trusted
        self.has_key = has_key

    def client(self, conn: HTTPConnection) -> Client:
        return client_of(conn, self.trusted)

    def token_user(self, conn: HTTPConnection, ip: str) -> str | None:
        """The user of a valid `USER:TOKEN` basic auth; None without one.

        Raises BadCredentials (and counts a failure) for a wrong one, TooManyFailures
        when the address is over its limit (checked first: no token is tried then)."""
        creds = basic_credentials(conn)
        if creds is None:
            return None
        if self.limit.blocked(ip):
            raise TooManyFailures(ip)
        user, token = creds
        if not user or self.tokens.verify(user, token) is None or not self.has_key(user):
            self.limit.failed(ip)
            raise BadCredentials(user)
        return user

    def session(self, conn: HTTPConnection) -> Session | None:
        session = self.sessions.read(conn.cookies.get(COOKIE))
        if session is not None and not self.has_key(session.user):
            return None  # the user's keys were removed: signed out
        return session


class Visitor(BaseUser):
    """Who is looking at a page (`request.user`): the session's user or nobody, the
    Gitolite name the rules see (`gitweb` for nobody), the client and the CSRF token."""

    def __init__(self, session: Session | None, client: Client) -> None:
        self.session = session
        self.user = session.user if session else None
        self.acts_as = self.user or ANONYMOUS
        self.client = client

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session else ""

    @property
    def is_authenticated(self) -> bool:
        return self.user is not None

    @property
    def display_name(self) -> str:
        return self.user or ""

    @property
    def identity(self) -> str:
        return self.acts_as


class VisitorBackend(AuthenticationBackend):
    """Starlette authentication for the pages: the signed session cookie, if any (an
    anonymous visitor is a Visitor too, acting as `gitweb`). Read in a worker thread, so a
    check that touches the disk never holds the event loop."""

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    def visitor(self, conn: HTTPConnection) -> Visitor:
        return Visitor(self.auth.session(conn), self.auth.client(conn))

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser]:
        v = await anyio.to_thread.run_sync(self.visitor, conn)
        return AuthCredentials(["authenticated"] if v.is_authenticated else []), v
