"""Short-lived LFS tokens: what `git-lfs-authenticate` hands out and what batch responses
put into their actions' headers (never the user's long-lived HTTP token).

A token is signed (itsdangerous, key HOME/lfs/.token.key, 0600, made on first use) and names
the user, the repository and the operation; it is accepted for that repository, for that
operation (a download token never uploads), until it expires. The caller still checks that
the user has a key in the keydir at the moment of use, so removing a user's key ends his
tokens too.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from gitserve.fsutil import atomic_write, locked

SCHEME = "Bearer"
PREFIX = "gslfs."
DEFAULT_TTL = 3600


@dataclass(frozen=True)
class Grant:
    user: str
    repo: str
    operation: str  # upload | download
    ref: str = ""


class LfsTokens:
    def __init__(self, lfs_dir: Path, ttl: int = DEFAULT_TTL) -> None:
        self.key_file = lfs_dir / ".token.key"
        self.ttl = ttl

    def _key(self) -> bytes:
        try:
            return self.key_file.read_bytes()
        except FileNotFoundError:
            pass
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.key_file.parent / ".token.lock"):
            if not self.key_file.exists():
                atomic_write(self.key_file, secrets.token_bytes(32), mode=0o600)
        return self.key_file.read_bytes()

    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._key(), salt="gitserve-lfs")

    def mint(self, grant: Grant) -> str:
        return PREFIX + str(self._serializer().dumps(
            {"u": grant.user, "r": grant.repo, "o": grant.operation, "f": grant.ref}))

    def header(self, grant: Grant) -> dict[str, str]:
        return {"Authorization": f"{SCHEME} {self.mint(grant)}"}

    def verify(self, token: str, repo: str) -> Grant | None:
        """The grant TOKEN carries for REPO; None when forged, expired or for another repo."""
        if not token.startswith(PREFIX):
            return None
        try:
            data = self._serializer().loads(token[len(PREFIX):], max_age=self.ttl)
        except (BadSignature, FileNotFoundError):
            return None
        if not isinstance(data, dict) or data.get("r") != repo:
            return None
        return Grant(str(data.get("u", "")), repo, str(data.get("o", "")), str(data.get("f", "")))


def bearer(authorization: str) -> str | None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != SCHEME.lower() or not value.strip().startswith(PREFIX):
        return None
    return value.strip()


__all__ = ["Grant", "LfsTokens", "bearer"]
