"""Web logins: one-time links made by `ssh git@HOST login`, and the session cookie they set.

The SSH key is the only credential gitserve trusts, so the web UI borrows it: the `login`
command (run over an authenticated SSH connection) stores the SHA-256 of a random nonce
with the user and a 5-minute deadline, and prints a link holding the nonce. Following the
link shows a confirmation form; posting it consumes the nonce (single use, under a file
lock, so two tabs cannot both win) and sets a signed session cookie. Links live on disk
because `gitserve shell` (behind a system sshd) runs in another process than the web face.

The cookie is signed (itsdangerous, key in HOME/http/session.key) and carries the user, a
CSRF token for the forms and its issue time; it expires after `[http] session_days`.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from gitserve.fsutil import atomic_write, locked

from .tokens import digest

LINK_SECONDS = 300
COOKIE = "gitserve_session"


class LoginLinks:
    """HOME/http/logins.json: {sha256(nonce): {"user": U, "expires": T}}."""

    def __init__(self, directory: Path) -> None:
        self.file = Path(directory) / "logins.json"
        self.lock_file = Path(directory) / "logins.lock"

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict[str, Any]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.file, json.dumps(data) + "\n", mode=0o600)

    def issue(self, user: str, seconds: int = LINK_SECONDS) -> str:
        """A new nonce for USER, valid SECONDS; only its digest is stored."""
        nonce = secrets.token_urlsafe(32)
        now = time.time()
        with locked(self.lock_file):
            data = {k: v for k, v in self._load().items() if float(v.get("expires", 0)) > now}
            data[digest(nonce)] = {"user": user, "expires": now + seconds}
            self._save(data)
        return nonce

    def peek(self, nonce: str) -> str | None:
        """The user NONCE would log in, without using it up (the confirmation page)."""
        entry = self._load().get(digest(nonce))
        if not entry or float(entry.get("expires", 0)) <= time.time():
            return None
        return str(entry.get("user"))

    def consume(self, nonce: str) -> str | None:
        """The user of NONCE if it is live; it never works again either way."""
        key = digest(nonce)
        now = time.time()
        with locked(self.lock_file):
            data = self._load()
            entry = data.pop(key, None)
            data = {k: v for k, v in data.items() if float(v.get("expires", 0)) > now}
            self._save(data)
        if not entry or float(entry.get("expires", 0)) <= now:
            return None
        return str(entry.get("user"))


@dataclass
class Session:
    user: str
    csrf: str


class Sessions:
    """Signed session cookies (no server-side state)."""

    def __init__(self, directory: Path, max_age: int) -> None:
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(self._key(Path(directory)), salt="session")

    @staticmethod
    def _key(directory: Path) -> bytes:
        path = directory / "session.key"
        with locked(directory / "session.lock"):
            try:
                key = path.read_bytes()
                if len(key) >= 32:
                    return key
            except FileNotFoundError:
                pass
            key = secrets.token_hex(32).encode()
            atomic_write(path, key.decode(), mode=0o600)
            return key

    def issue(self, user: str) -> tuple[str, Session]:
        session = Session(user, secrets.token_urlsafe(24))
        return self._serializer.dumps({"u": user, "c": session.csrf}), session

    def read(self, cookie: str | None) -> Session | None:
        if not cookie or len(cookie) > 4096:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), str):
            return None
        return Session(data["u"], str(data.get("c", "")))


def csrf_ok(session: Session | None, sent: str | None) -> bool:
    return bool(session and sent and session.csrf
                and hmac.compare_digest(session.csrf.encode(), sent.encode()))
