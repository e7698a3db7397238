"""Build secrets kept in HashiCorp Vault / OpenBao (KV version 2), through the `hvac` client.

`[secrets] backend = "vault"`: each repo's secrets are the keys of one KV v2 secret at
`{mount}/{path}` with `{repo}` filled in (default `secret/gitserve/REPO`). Only the server
talks to Vault, when a build is queued; the values then travel to the worker encrypted with
secrets.key exactly as stored secrets do, so a build host never needs Vault access and Redis
never holds a value in clear. Every failure (Vault down, sealed, token refused, no such
mount) is one SecretError line, which fails the build that needed the values.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from gitserve.settings import SecretsSettings

from .crypt import SecretError, validate_name


def _read_file(path: str, what: str) -> str:
    try:
        value = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise SecretError(f"Vault {what} file {path}: {exc.strerror or exc}") from None
    if not value:
        raise SecretError(f"Vault {what} file {path} is empty")
    return value


def _when(stamp: str) -> float | None:
    """Vault's RFC 3339 time (nanoseconds, Z) as a Unix time; the seconds are enough."""
    try:
        return dt.datetime.fromisoformat(stamp[:19]).replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


class VaultStore:
    """One repo's secrets = one KV v2 secret; a client is opened (and logged in) per call."""

    def __init__(self, conf: SecretsSettings) -> None:
        if not conf.address:
            raise SecretError('[secrets] backend = "vault" needs [secrets] address')
        if not conf.token_file and not (conf.role_id_file and conf.secret_id_file):
            raise SecretError("[secrets] backend = \"vault\" needs token_file, or role_id_file "
                              "and secret_id_file (AppRole)")
        self.conf = conf

    # --- plumbing ----------------------------------------------------------------------
    def path(self, repo: str) -> str:
        return self.conf.path.replace("{repo}", repo).strip("/")

    def _where(self, repo: str) -> str:
        return f"{self.conf.mount}/{self.path(repo)}"

    def _fail(self, exc: BaseException, repo: str) -> SecretError:
        import hvac.exceptions
        import requests

        addr = self.conf.address
        if isinstance(exc, requests.exceptions.RequestException):
            reason = type(exc).__name__
            inner = str(exc).splitlines()[0] if str(exc) else ""
            if "Connection refused" in inner:
                reason = "connection refused"
            elif isinstance(exc, requests.exceptions.Timeout):
                reason = f"no answer within {self.conf.timeout:g}s"
            return SecretError(f"Vault at {addr} is unreachable ({reason})")
        if isinstance(exc, hvac.exceptions.VaultDown):
            return SecretError(f"Vault at {addr} is sealed or down")
        if isinstance(exc, (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized)):
            return SecretError(f"Vault at {addr} refused access to {self._where(repo)} (permission denied)")
        if isinstance(exc, hvac.exceptions.VaultError):
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            return SecretError(f"Vault at {addr}: {first}")
        return SecretError(f"Vault at {addr}: {type(exc).__name__}")

    def _client(self, repo: str) -> Any:
        try:
            import hvac
        except ImportError:
            raise SecretError('[secrets] backend = "vault" needs the hvac package: '
                              "pip install 'gitserve[vault]'") from None

        conf = self.conf
        kwargs: dict[str, Any] = {"url": conf.address, "timeout": conf.timeout,
                                  "verify": conf.ca_file or True}
        if conf.namespace:
            kwargs["namespace"] = conf.namespace
        try:
            if conf.token_file:
                return hvac.Client(token=_read_file(conf.token_file, "token"), **kwargs)
            client = hvac.Client(**kwargs)
            client.auth.approle.login(role_id=_read_file(conf.role_id_file, "role_id"),
                                      secret_id=_read_file(conf.secret_id_file, "secret_id"),
                                      mount_point=conf.approle_mount)
            return client
        except SecretError:
            raise
        except Exception as exc:  # noqa: BLE001 - requests/hvac errors become one line
            raise self._fail(exc, repo) from None

    def _read(self, client: Any, repo: str) -> tuple[dict[str, str], dict[str, Any]]:
        import hvac.exceptions

        try:
            resp = client.secrets.kv.v2.read_secret_version(
                path=self.path(repo), mount_point=self.conf.mount, raise_on_deleted_version=False)
        except hvac.exceptions.InvalidPath:
            return {}, {}
        data = (resp.get("data") or {})
        values = {str(k): v if isinstance(v, str) else str(v) for k, v in (data.get("data") or {}).items()}
        return values, data.get("metadata") or {}

    def _call(self, repo: str, fn: Any) -> Any:
        client = self._client(repo)
        try:
            return fn(client)
        except SecretError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, repo) from None

    # --- the store interface ------------------------------------------------------------
    def values(self, repo: str) -> dict[str, str]:
        values, _ = self._call(repo, lambda c: self._read(c, repo))
        for name in values:
            try:
                validate_name(name)
            except SecretError as exc:
                raise SecretError(f"Vault secret {self._where(repo)}: {exc}") from None
        return values

    def list(self, repo: str) -> list[tuple[str, float | None]]:
        values, meta = self._call(repo, lambda c: self._read(c, repo))
        when = _when(str(meta.get("created_time") or ""))
        return sorted((name, when) for name in values)

    def set(self, repo: str, name: str, value: str) -> None:
        def write(client: Any) -> None:
            values, meta = self._read(client, repo)
            values[name] = value
            client.secrets.kv.v2.create_or_update_secret(
                path=self.path(repo), secret=values, mount_point=self.conf.mount,
                cas=int(meta.get("version") or 0))
        self._call(repo, write)

    def remove(self, repo: str, name: str) -> None:
        def write(client: Any) -> None:
            values, meta = self._read(client, repo)
            if name not in values:
                raise SecretError(f"{repo} has no secret {name}")
            del values[name]
            client.secrets.kv.v2.create_or_update_secret(
                path=self.path(repo), secret=values, mount_point=self.conf.mount,
                cas=int(meta.get("version") or 0))
        self._call(repo, write)
