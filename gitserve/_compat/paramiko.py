"""paramiko internals gitserve relies on, each behind one name (see the package doc).

gitserve changes two steps of paramiko's server-side user authentication (why: the doc of
gitserve/ssh/auth.py): how a key in a userauth request is loaded, and what happens when a
result is sent. paramiko offers no public hook for either, so `AuthHandler` below overrides
its private methods once and calls public-named methods a subclass may override, and
`install_auth_handler` puts a handler on a server Transport (the `auth_handler` attribute,
set by paramiko itself when the server starts, is not documented API).
"""

from __future__ import annotations

from typing import Any

from paramiko.auth_handler import AuthHandler as _AuthHandler
from paramiko.transport import Transport

# (dotted owner, member, how it is reached): see gitserve/_compat/dulwich.py
INTERNALS: tuple[tuple[str, str, str], ...] = (
    ("paramiko.auth_handler.AuthHandler", "_generate_key_from_request", "attr"),
    ("paramiko.auth_handler.AuthHandler", "_send_auth_result", "attr"),
    ("paramiko.auth_handler.AuthHandler", "_disconnect_no_more_auth", "attr"),
    ("paramiko.transport.Transport", "auth_handler", "instance"),
)


class AuthHandler(_AuthHandler):
    """paramiko's AuthHandler with its private steps under public names."""

    def key_from_request(self, algorithm: str, keyblob: bytes) -> Any:
        """The key object for a userauth request's ALGORITHM and KEYBLOB (paramiko's
        parsing; it may raise or return None for a key it cannot load)."""
        return super()._generate_key_from_request(algorithm, keyblob)

    def send_auth_result(self, username: str, method: str, result: int) -> None:
        """Send USERNAME's result for METHOD to the client (paramiko's step)."""
        super()._send_auth_result(username, method, result)

    def disconnect_no_more_auth(self) -> None:
        """End the connection with SSH's "no more authentication methods available"."""
        self._disconnect_no_more_auth()

    # paramiko calls these; they route to the public names above
    def _generate_key_from_request(self, algorithm, keyblob):  # noqa: ANN001
        return self.key_from_request(algorithm, keyblob)

    def _send_auth_result(self, username, method, result):  # noqa: ANN001
        self.send_auth_result(username, method, result)


def install_auth_handler(transport: Transport, handler: AuthHandler) -> None:
    """Use HANDLER for TRANSPORT's user authentication (before `start_server`)."""
    transport.auth_handler = handler
