"""Agent keys and what they sign.

Redis is the bus between the server and its deploy agents, not the trust: build hosts hold
the same Redis password, so anything read from Redis could have been written by a build
host. Each agent therefore shares one random 256-bit key with the server (HOME/agents/keys/
NAME.key on the server, made by `gitserve deploy agent-key NAME`; AGENT_HOME/agent.key on
the web host) and:
- every job the server queues for the agent is an HMAC-SHA256 envelope over its canonical
  JSON, with the agent's name and an expiry (a job that waited too long is refused);
- every result and status report the agent writes back is sealed the same way, so the
  server never takes a forged "prepared" for a host that did not prepare;
- the release download is a signed request (the key never crosses the wire);
- the processes' secrets in a job are Fernet-encrypted with a key derived from it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Mapping

from cryptography.fernet import Fernet, InvalidToken

from gitserve.fsutil import atomic_write
from gitserve.options import AGENT_RE
from gitserve.settings import Settings

from ..errors import DeployError

KEY_FILE = "agent.key"          # in the agent's home
FETCH_WINDOW = 300.0            # seconds a signed download request stays valid


class BadSignature(DeployError):
    def __init__(self, message: str) -> None:
        super().__init__("auth", message)


def check_agent_name(name: str) -> str:
    if not isinstance(name, str) or not AGENT_RE.match(name):
        raise DeployError("options", f"invalid deploy agent name {name!r} (letters, digits, . _ -; at most 64)")
    return name


def server_key_path(settings: Settings, agent: str) -> Path:
    return settings.home / "agents" / "keys" / f"{check_agent_name(agent)}.key"


def ensure_server_key(settings: Settings, agent: str) -> bytes:
    """The key the server shares with AGENT (made on first use, 0600)."""
    path = server_key_path(settings, agent)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, secrets.token_hex(32) + "\n", mode=0o600)
    return _read_key(path)


def server_key(settings: Settings, agent: str) -> bytes | None:
    """AGENT's key on the server, None when the admin never made one."""
    path = server_key_path(settings, agent)
    return _read_key(path) if path.exists() else None


def agent_key(home: Path) -> bytes:
    """The agent's own copy (AGENT_HOME/agent.key)."""
    path = home / KEY_FILE
    if not path.exists():
        raise DeployError("agent", f"no agent key at {path}: make it on the server with "
                          "`gitserve deploy agent-key NAME` and copy it there (mode 0600)")
    if os.stat(path).st_mode & 0o077:
        raise DeployError("agent", f"{path} is readable by others: chmod 600 it")
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
        key = bytes.fromhex(text)
    except (OSError, ValueError):
        raise DeployError("agent", f"{path} is not an agent key (64 hex digits)") from None
    if len(key) != 32:
        raise DeployError("agent", f"{path} is not an agent key (64 hex digits)")
    return key


def _mac(key: bytes, purpose: str, data: bytes) -> str:
    return hmac.new(key, b"gitserve-agent-v1\n" + purpose.encode() + b"\n" + data,
                    hashlib.sha256).hexdigest()


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def seal(key: bytes, purpose: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """BODY with its signature, as it travels through Redis (plain JSON for rq)."""
    return {"body": dict(body), "sig": _mac(key, purpose, _canonical(body))}


def unseal(key: bytes, purpose: str, envelope: Any) -> dict[str, Any]:
    """The body of a sealed ENVELOPE; BadSignature unless KEY signed it for PURPOSE."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("body"), dict) \
            or not isinstance(envelope.get("sig"), str):
        raise BadSignature(f"not a signed {purpose}")
    if not hmac.compare_digest(_mac(key, purpose, _canonical(envelope["body"])), envelope["sig"]):
        raise BadSignature(f"{purpose} signature does not match this agent's key")
    return dict(envelope["body"])


def fetch_headers(key: bytes, agent: str, path: str, now: float | None = None) -> dict[str, str]:
    """Headers of a signed GET of PATH on the server's HTTP face."""
    stamp = str(int(now if now is not None else time.time()))
    return {"X-Gitserve-Agent": agent, "X-Gitserve-Time": stamp,
            "Authorization": f"GitserveAgent {_mac(key, 'fetch', f'GET {path} {stamp}'.encode())}"}


def check_fetch(settings: Settings, headers: Mapping[str, str], path: str,
                now: float | None = None) -> str | None:
    """The agent a signed GET of PATH came from, or None (unknown agent, bad or stale
    signature): the HTTP face answers 401 then."""
    agent = headers.get("x-gitserve-agent", "")
    stamp = headers.get("x-gitserve-time", "")
    auth = headers.get("authorization", "")
    if not AGENT_RE.match(agent) or not stamp.isdigit() or not auth.startswith("GitserveAgent "):
        return None
    if abs((now if now is not None else time.time()) - int(stamp)) > FETCH_WINDOW:
        return None
    key = server_key(settings, agent)
    if key is None:
        return None
    want = _mac(key, "fetch", f"GET {path} {stamp}".encode())
    return agent if hmac.compare_digest(want, auth.split(" ", 1)[1].strip()) else None


def _fernet(key: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hmac.new(key, b"gitserve-agent-env", hashlib.sha256).digest()))


def encrypt_env(key: bytes, env: Mapping[str, str]) -> str:
    """The processes' environment (repo secrets) as it may sit in Redis: encrypted."""
    return _fernet(key).encrypt(_canonical(dict(env))).decode()


def decrypt_env(key: bytes, token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        data = json.loads(_fernet(key).decrypt(token.encode()))
    except (InvalidToken, ValueError):
        raise BadSignature("the job's environment cannot be decrypted with this agent's key") from None
    return {str(k): str(v) for k, v in dict(data).items()}
