"""Personal access tokens for smart HTTP (`ssh git@HOST token create|list|revoke`).

A token is 32 random bytes (urlsafe base64) behind a `gst_` prefix, shown to its owner once.
Only its SHA-256 is stored: a random 256-bit secret needs no slow hash (nobody can guess
one from its digest), and a lookup costs microseconds, which matters because git sends
the token with every request. Comparison is constant-time. The file is read on every
check, so a revoked token stops working for the next request, in every process.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from gitserve.errors import GitserveError
from gitserve.fsutil import atomic_write, locked

PREFIX = "gst_"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_TOKENS_PER_USER = 50


class TokenError(GitserveError):
    """Bad token name, duplicate, unknown name: one line for the user."""


@dataclass
class TokenInfo:
    name: str
    created: float
    expires: float  # 0: never
    last_used: float

    @property
    def expired(self) -> bool:
        return bool(self.expires) and self.expires < time.time()


def digest(secret: str) -> str:
    """What is stored of a token or a login nonce: its SHA-256, hex (the secret never is)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


class TokenStore:
    """HOME/http/tokens.json: {user: {name: {sha256, created, expires, last_used}}}."""

    def __init__(self, directory: Path) -> None:
        self.file = Path(directory) / "tokens.json"
        self.lock_file = Path(directory) / "tokens.lock"

    def _load(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            data = json.loads(self.file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # unreadable: no token works (fail closed), `create` rewrites it
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict[str, Any]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.file, json.dumps(data, indent=1, sort_keys=True) + "\n", mode=0o600)

    def create(self, user: str, name: str, days: int | None = None) -> str:
        """A new token for USER called NAME; returns the token (never stored in clear)."""
        if not NAME_RE.match(name):
            raise TokenError(f"invalid token name {name!r} (letters, digits, . _ -; at most 64)")
        if days is not None and not 1 <= days <= 3650:
            raise TokenError("--expires takes a number of days from 1 to 3650")
        token = PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        with locked(self.lock_file):
            data = self._load()
            mine = data.setdefault(user, {})
            if name in mine:
                raise TokenError(f"you already have a token named {name} (revoke it first)")
            if len(mine) >= MAX_TOKENS_PER_USER:
                raise TokenError(f"at most {MAX_TOKENS_PER_USER} tokens per user")
            mine[name] = {"sha256": digest(token), "created": now,
                          "expires": now + days * 86400 if days else 0, "last_used": 0}
            self._save(data)
        return token

    def list(self, user: str) -> list[TokenInfo]:
        mine = self._load().get(user, {})
        return [TokenInfo(name, float(v.get("created", 0)), float(v.get("expires", 0)),
                          float(v.get("last_used", 0)))
                for name, v in sorted(mine.items())]

    def revoke(self, user: str, name: str) -> None:
        with locked(self.lock_file):
            data = self._load()
            if name not in data.get(user, {}):
                raise TokenError(f"you have no token named {name}")
            del data[user][name]
            if not data[user]:
                del data[user]
            self._save(data)

    def verify(self, user: str, token: str) -> str | None:
        """The name of USER's live token equal to TOKEN, or None."""
        if not token.startswith(PREFIX) or len(token) > 200:
            return None
        wanted = digest(token)
        found = None
        now = time.time()
        for name, v in self._load().get(user, {}).items():
            stored = str(v.get("sha256", ""))
            # compare against every token (no early exit): timing says nothing about which
            if hmac.compare_digest(stored, wanted):
                expires = float(v.get("expires", 0) or 0)
                if not expires or expires > now:
                    found = name
        return found
