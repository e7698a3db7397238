"""Public-key authentication and the per-connection paramiko ServerInterface.

Two paramiko behaviours are changed on purpose:
- A key type paramiko cannot parse (an `sk-ssh-ed25519@openssh.com` security key that an
  agent offers first, or plain `ssh-rsa` SHA-1 signatures) makes paramiko disconnect. We
  refuse it *as a key* instead, so OpenSSH goes on to the next key it has.
- paramiko asks `check_auth_publickey` both for a signature-less query and right before it
  verifies a signature. Binding the identity on a query would let a client claim someone
  else's public key (which is public) and then log in with its own. The identity is bound
  only when paramiko reports success, to the key of that very request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import paramiko
from paramiko.common import (AUTH_FAILED, AUTH_SUCCESSFUL, OPEN_FAILED_RESOURCE_SHORTAGE,
                             OPEN_SUCCEEDED)
from paramiko.common import OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED as PROHIBITED

from gitserve._compat import paramiko as paramiko_compat

# publickey failures one connection may have before it is cut off (OpenSSH's default)
MAX_AUTH_TRIES = 6

# key blob -> user name (or None for an unknown key)
KeyLookup = Callable[[bytes], "str | None"]


class UnsupportedKey:
    """Stands in for a key paramiko could not load, so it can be refused like any unknown key."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm

    def get_name(self) -> str:
        return self.algorithm


class GitserveAuthHandler(paramiko_compat.AuthHandler):
    def key_from_request(self, algorithm: str, keyblob: bytes) -> Any:
        try:
            key = super().key_from_request(algorithm, keyblob)
        except Exception:  # noqa: BLE001 - mangled or unknown key: refuse it, don't hang up
            key = None
        return key if key is not None else UnsupportedKey(algorithm)

    def send_auth_result(self, username: str, method: str, result: int) -> None:
        server = self.transport.server_object
        if result == AUTH_SUCCESSFUL and isinstance(server, GitSSHServer):
            server.bind_verified()
        elif method == "publickey" and isinstance(server, GitSSHServer):
            server.auth_failed()  # "none" probes are not failures worth rate-limiting
        super().send_auth_result(username, method, result)
        if isinstance(server, GitSSHServer) and server.failures >= MAX_AUTH_TRIES:
            # OpenSSH's MaxAuthTries: one connection may not try a whole bag of keys
            self.disconnect_no_more_auth()


@dataclass
class ExecRequest:
    command: str | None = None
    event: threading.Event = field(default_factory=threading.Event)


class GitSSHServer(paramiko.ServerInterface):
    """One per connection: which key authenticated, and what each channel asked to run."""

    def __init__(self, lookup: KeyLookup, peer: str,
                 on_auth_failure: Callable[[str], None] | None = None,
                 max_channels: int = 10) -> None:
        self.lookup = lookup
        # channels open at once on this connection: each holds a thread until it ends (one
        # connection opened 1,000 and held 1,007 threads until the idle timeout; issue 21)
        self.max_channels = max_channels
        self.peer = peer
        self.on_auth_failure = on_auth_failure
        self.user: str | None = None
        self.key_fingerprint: str | None = None
        self.authenticated = threading.Event()
        self.failures = 0
        self._candidate: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._execs: dict[int, ExecRequest] = {}
        self.env: dict[str, str] = {}

    # --- authentication ----------------------------------------------------
    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_none(self, username: str) -> int:
        return AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        return AUTH_FAILED

    def check_auth_publickey(self, username: str, key) -> int:  # noqa: ANN001
        self._candidate = None
        if isinstance(key, UnsupportedKey):
            return AUTH_FAILED
        try:
            user = self.lookup(key.asbytes())
        except Exception:  # noqa: BLE001 - a broken keydir must not crash the transport thread
            user = None
        if not user:
            return AUTH_FAILED
        self._candidate = (user, key.fingerprint)
        return AUTH_SUCCESSFUL

    def bind_verified(self) -> None:
        """Called at the moment paramiko grants auth: the candidate is the verified key."""
        if self._candidate is None:  # cannot happen; refuse to guess
            raise paramiko.SSHException("no verified key")
        self.user, self.key_fingerprint = self._candidate
        self.authenticated.set()

    def auth_failed(self) -> None:
        self.failures += 1
        if self.on_auth_failure is not None:
            self.on_auth_failure(self.peer)

    # --- channels: exec only -------------------------------------------------
    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session" and self.user is not None:
            with self._lock:
                if len(self._execs) >= self.max_channels:
                    return OPEN_FAILED_RESOURCE_SHORTAGE
                self._execs[chanid] = ExecRequest()
            return OPEN_SUCCEEDED
        return PROHIBITED

    def check_channel_exec_request(self, channel, command) -> bool:  # noqa: ANN001
        with self._lock:
            req = self._execs.get(channel.get_id())
        if req is None or req.command is not None:
            return False
        req.command = command.decode("utf-8", "replace") if isinstance(command, bytes) else command
        req.event.set()
        return True

    def wait_exec(self, chanid: int, timeout: float,
                  gone: Callable[[], bool] = lambda: False) -> str | None:
        """The command the channel asked to run; None after TIMEOUT or once GONE() says the
        client closed the channel (its place among max_channels is then free at once)."""
        with self._lock:
            req = self._execs.get(chanid)
        if req is None:
            return None
        deadline = time.monotonic() + timeout
        while not req.event.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
            if gone() or time.monotonic() >= deadline:
                return None
        return req.command

    def forget(self, chanid: int) -> None:
        with self._lock:
            self._execs.pop(chanid, None)

    def check_channel_env_request(self, channel, name, value) -> bool:  # noqa: ANN001
        name = name.decode() if isinstance(name, bytes) else name
        if name != "GIT_PROTOCOL":
            return False
        self.env[name] = value.decode() if isinstance(value, bytes) else value
        return True

    def check_channel_pty_request(self, *args) -> bool:  # noqa: ANN002
        return False

    def check_channel_shell_request(self, channel) -> bool:  # noqa: ANN001
        """No shell is ever started: like Gitolite's forced command, `ssh git@host` with no
        command runs `info` (SPEC §4: an empty command means info) and exits."""
        with self._lock:
            req = self._execs.get(channel.get_id())
        if req is None or req.command is not None:
            return False
        req.command = ""
        req.event.set()
        return True

    def check_channel_subsystem_request(self, channel, name) -> bool:  # noqa: ANN001
        self._refuse(channel)
        return False

    def _refuse(self, channel) -> None:  # noqa: ANN001
        """A shell or subsystem was asked for: wake the channel thread so it ends at once."""
        with self._lock:
            req = self._execs.get(channel.get_id())
        if req is not None and req.command is None:
            req.event.set()

    def check_channel_x11_request(self, *args) -> bool:  # noqa: ANN002
        return False

    def check_channel_forward_agent_request(self, channel) -> bool:  # noqa: ANN001
        return False

    def check_channel_direct_tcpip_request(self, chanid, origin, destination) -> int:  # noqa: ANN001
        return PROHIBITED

    def check_port_forward_request(self, address, port) -> bool:  # noqa: ANN001
        return False

    def check_global_request(self, kind, msg) -> bool:  # noqa: ANN001
        return False
