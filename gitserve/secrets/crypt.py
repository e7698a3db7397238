"""Build secrets: encrypted at rest, decrypted only inside the job process (masker.py masks them).

The server stores each repo's secrets Fernet-encrypted under HOME/secrets/REPO.json with the
key HOME/secrets.key. Jobs carry the encrypted tokens (so Redis never holds a clear value)
and the worker decrypts them with the key file named by GITSERVE_SECRETS_KEY_FILE (a build
host gets a copy of HOME/secrets.key) or, for local workers, HOME/secrets.key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from cryptography.fernet import Fernet, InvalidToken

from gitserve.errors import GitserveError
from gitserve.fsutil import atomic_write

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Names a secret may not take: they would override what the build relies on.
RESERVED = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "LANG", "TMPDIR",
            "LD_PRELOAD", "LD_LIBRARY_PATH", "IFS"}
# where a worker finds the key (buildqueue.workersettings reads it; named here for messages)
KEY_FILE_ENV = "GITSERVE_SECRETS_KEY_FILE"
# The scope of the server's own secrets (the SMTP password): no repo name starts with '@',
# so no build can ever receive them.
SERVER_SCOPE = "@server"
# Repo secrets that serve notifications, not builds: never put into a build's environment.
NOTIFY_ONLY = frozenset({"webhook"})


class SecretError(GitserveError):
    """Invalid name/value, or a key that cannot decrypt."""


def validate_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise SecretError(f"invalid secret name {name!r}: use letters, digits and _ (an env var name)")
    if name in RESERVED or name.startswith("GITSERVE_") or name.startswith("GL_"):
        raise SecretError(f"secret name {name!r} is reserved")


def ensure_key(key_file: Path) -> bytes:
    """Read the key, creating it (mode 0600) on first use."""
    if key_file.exists():
        return key_file.read_bytes().strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


def fernet_from(key_file: Path) -> Fernet:
    """The key file holds a Fernet key, or 32 raw random bytes (as `gitserve init` writes it)."""
    data = key_file.read_bytes()
    try:
        return Fernet(data.strip())
    except (ValueError, binascii.Error):
        pass
    raw = data if len(data) == 32 else hashlib.sha256(data).digest()
    return Fernet(base64.urlsafe_b64encode(raw))


def store_path(secrets_dir: Path, repo: str) -> Path:
    return secrets_dir / f"{repo}.json"


def load_tokens(secrets_dir: Path, repo: str) -> dict[str, str]:
    """Encrypted tokens of REPO's secrets ({} when it has none)."""
    path = store_path(secrets_dir, repo)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SecretError(f"{path}: unreadable secrets file ({exc})") from exc
    return {str(k): str(v) for k, v in data.items()}


def check_value(value: str) -> None:
    if value == "":
        raise SecretError("empty secret value (it is read from stdin)")
    if "\0" in value:
        raise SecretError("secret value contains a NUL byte")


def set_secret(secrets_dir: Path, key_file: Path, repo: str, name: str, value: str) -> None:
    """Encrypt and store one secret; the file is replaced atomically (never half-written)."""
    validate_name(name)
    check_value(value)
    ensure_key(key_file)
    fernet = fernet_from(key_file)
    tokens = load_tokens(secrets_dir, repo)
    tokens[name] = fernet.encrypt(value.encode()).decode()
    _store(secrets_dir, repo, tokens)


def _store(secrets_dir: Path, repo: str, tokens: dict[str, str]) -> None:
    path = store_path(secrets_dir, repo)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, json.dumps(tokens, indent=1, sort_keys=True), mode=0o600)


def remove_secret(secrets_dir: Path, repo: str, name: str) -> None:
    """Forget one secret; SecretError when REPO has no secret NAME."""
    tokens = load_tokens(secrets_dir, repo)
    if name not in tokens:
        raise SecretError(f"{repo} has no secret {name}")
    del tokens[name]
    if tokens:
        _store(secrets_dir, repo, tokens)
    else:
        store_path(secrets_dir, repo).unlink(missing_ok=True)


def set_times(tokens: dict[str, str], key_file: Path | None) -> dict[str, float | None]:
    """When each secret was set: a Fernet token carries its creation time (authenticated, so
    read with the key, but the value itself is never decrypted). None when it cannot be read."""
    fernet = fernet_from(key_file) if key_file is not None and key_file.exists() else None
    out: dict[str, float | None] = {}
    for name, token in tokens.items():
        try:
            out[name] = float(fernet.extract_timestamp(token.encode())) if fernet else None
        except InvalidToken:
            out[name] = None
    return out


def encrypt_values(values: dict[str, str], key_file: Path) -> dict[str, str]:
    """Tokens for values read elsewhere (Vault), exactly as stored secrets travel to a build."""
    if not values:
        return {}
    ensure_key(key_file)
    fernet = fernet_from(key_file)
    return {name: fernet.encrypt(value.encode()).decode() for name, value in values.items()}


def decrypt(tokens: dict[str, str], key_file: Path | None) -> dict[str, str]:
    if not tokens:
        return {}
    if key_file is None or not key_file.exists():
        raise SecretError(f"this build has secrets but the worker has no key: set {KEY_FILE_ENV} "
                          "to a copy of the server's secrets.key")
    fernet = fernet_from(key_file)
    try:
        return {name: fernet.decrypt(token.encode()).decode() for name, token in tokens.items()}
    except InvalidToken as exc:
        raise SecretError(f"{key_file} cannot decrypt this repo's secrets (wrong key?)") from exc


# --- job signatures -------------------------------------------------------------------------
# A build or deploy job in Redis says what to check out (repo, commit, where from), which
# secret tokens to decrypt and how to sandbox it. Whoever can write to Redis but does not hold
# secrets.key (a leaked Redis password) must not be able to make one: copying repo A's secret
# tokens into a job that checks out code of his own would hand him A's secrets. So the party
# that queues a job (the server; a worker handing a passed build to the deploy queue) signs
# its JSON with a key derived from secrets.key, and a worker runs only jobs whose signature
# it can check with its own copy (every worker holds one: it decrypts the secrets with it).
MAC_FIELD = "mac"
_MAC_CONTEXT = b"gitserve job signature v1\0"


def _mac_key(key_file: Path) -> bytes:
    return hashlib.sha256(_MAC_CONTEXT + key_file.read_bytes().strip()).digest()


def _canonical(data: Mapping[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in data.items() if k != MAC_FIELD}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()


def sign_job(data: dict[str, Any], key_file: Path) -> dict[str, Any]:
    """DATA (a job's JSON) with its signature under MAC_FIELD; the key is made on first use."""
    ensure_key(key_file)
    mac = hmac.new(_mac_key(key_file), _canonical(data), hashlib.sha256).hexdigest()
    return {**data, MAC_FIELD: mac}


def check_job(data: Mapping[str, Any], key_file: Path | None) -> None:
    """Raise SecretError (one line) unless DATA carries a valid signature under KEY_FILE."""
    if key_file is None or not key_file.is_file():
        raise SecretError("this worker has no secrets.key to check the job's signature with "
                          f"(set {KEY_FILE_ENV}, or run it with the server's home)")
    given = data.get(MAC_FIELD)
    want = hmac.new(_mac_key(key_file), _canonical(data), hashlib.sha256).hexdigest()
    if not isinstance(given, str) or not hmac.compare_digest(given, want):
        raise SecretError("the job is not signed by this server's secrets.key (a job written "
                          "into Redis by someone else, or a worker with another key)")


# --- build verdicts -------------------------------------------------------------------------
# A gate build's verdict reaches the push through its record in Redis. So that one written
# there with only the Redis password does not open the gate, the worker that ends a build as
# passed seals (build id, status, commit) with the job key; the gate checks the seal.
_RESULT_CONTEXT = "gitserve build result v1"


def seal_result(key_file: Path, build_id: str, status: str, commit: str) -> str:
    message = "\0".join((_RESULT_CONTEXT, build_id, status, commit)).encode()
    return hmac.new(_mac_key(key_file), message, hashlib.sha256).hexdigest()


def result_sealed(key_file: Path | None, build_id: str, status: str, commit: str,
                  seal: str | None) -> bool:
    """Did a holder of KEY_FILE end BUILD_ID with STATUS for COMMIT (SEAL its seal)?"""
    if key_file is None or not key_file.is_file() or not seal:
        return False
    return hmac.compare_digest(seal_result(key_file, build_id, status, commit), seal)
