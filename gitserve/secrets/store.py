"""Where a repo's secrets live ([secrets] backend), behind one small interface.

- "file" (default): HOME/secrets/REPO.json, Fernet-encrypted with HOME/secrets.key.
- "vault": a KV v2 secret per repo in HashiCorp Vault / OpenBao (vault.py).

The server's own secrets (scope `@server`, e.g. the SMTP password) always stay in the
file store: the server needs them even when Vault is down, and no build ever sees them.
Only server-side code uses this module; workers get encrypted tokens in their payload.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Protocol

from gitserve.fsutil import locked

from gitserve.settings import Settings

from . import crypt as sec
from .crypt import SecretError


class Store(Protocol):
    def values(self, repo: str) -> dict[str, str]: ...
    def list(self, repo: str) -> list[tuple[str, float | None]]: ...
    def set(self, repo: str, name: str, value: str) -> None: ...
    def remove(self, repo: str, name: str) -> None: ...


class FileStore:
    def __init__(self, settings: Settings) -> None:
        self.dir: Path = settings.home / "secrets"
        self.key_file: Path = settings.secrets_key_file

    def values(self, repo: str) -> dict[str, str]:
        return sec.decrypt(sec.load_tokens(self.dir, repo), self.key_file)

    def list(self, repo: str) -> list[tuple[str, float | None]]:
        return sorted(sec.set_times(sec.load_tokens(self.dir, repo), self.key_file).items())

    def set(self, repo: str, name: str, value: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with locked(self.dir / ".lock"):  # two admins setting secrets of one repo lose nothing
            sec.set_secret(self.dir, self.key_file, repo, name, value)

    def remove(self, repo: str, name: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with locked(self.dir / ".lock"):
            sec.remove_secret(self.dir, repo, name)


BACKENDS = ("file", "vault")


def store_for(settings: Settings, repo: str) -> Store:
    """The store holding REPO's secrets (the server scope is always the file store)."""
    backend = settings.secrets.backend
    if backend not in BACKENDS:
        raise SecretError(f"[secrets] backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "file" or repo == sec.SERVER_SCOPE:
        return FileStore(settings)
    from .vault import VaultStore

    return VaultStore(settings.secrets)


def build_tokens(settings: Settings, repo: str, ref: str | None = None) -> dict[str, str]:
    """What a build job of REPO's REF carries: the secrets scoped to REF (all of them without
    a scope: scope.py; REF None: only the unscoped ones) encrypted with secrets.key,
    without the notification-only ones. File store: the stored tokens as they are (never
    decrypted here); Vault: values read now and encrypted. Raises SecretError (one line) when
    Vault fails."""
    from . import scope as secretscope

    if settings.secrets.backend == "file":
        tokens = sec.load_tokens(settings.home / "secrets", repo)
        keep = secretscope.for_ref(settings, repo, [k for k in tokens if k not in sec.NOTIFY_ONLY], ref)
        return {k: tokens[k] for k in keep}
    values = store_for(settings, repo).values(repo)
    keep = secretscope.for_ref(settings, repo, [k for k in values if k not in sec.NOTIFY_ONLY], ref)
    return sec.encrypt_values({k: values[k] for k in keep}, settings.secrets_key_file)


def scope_name(raw: str) -> str:
    """A repo name as the secrets commands take it (`@server`, or a repo with or without .git);
    SecretError for anything else (no '..', no absolute path)."""
    import re

    if raw == sec.SERVER_SCOPE:
        return raw
    repo = raw.removesuffix(".git")
    if (not re.match(r"^[A-Za-z0-9][A-Za-z0-9._@/+-]*$", repo) or ".." in repo.split("/")
            or repo.endswith("/") or "//" in repo):
        raise SecretError(f"invalid repo name {raw!r}")
    return repo


def when(ts: float | None) -> str:
    """A secret's set time as `secrets list` prints it (UTC)."""
    from datetime import datetime

    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
