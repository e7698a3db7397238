"""`gitserve shell USER`: the forced command behind the system OpenSSH (Gitolite's gitolite-shell).

sshd has verified the key and runs `gitserve shell USER` from the matching authorized_keys
line; the client's command is in SSH_ORIGINAL_COMMAND (absent for `ssh git@host`, which
means `info`), its address in SSH_CONNECTION and, with `AcceptEnv GIT_PROTOCOL`, the
protocol version in GIT_PROTOCOL. From there the same session code as the built-in server
runs on stdin/stdout/stderr, so access checks, git services, commands, build logs over
sideband and the audit log are the same for both transports.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Mapping, Sequence

from dulwich.errors import HangupException

from gitserve import admin
from gitserve.git.pushhooks import PushHook
from gitserve.settings import Settings

from . import commands, session

log = logging.getLogger(__name__)

# a keydir user name (Gitolite's $USERNAME_PATT) or the internal builder identity
_USER = re.compile(r"^(?:[0-9a-zA-Z][-0-9a-zA-Z._@+]*|:builder)$")
_CLIENT_GONE = (BrokenPipeError, ConnectionError, EOFError, HangupException, socket.timeout)


class StdioChannel:
    """A ByteChannel over file descriptors 0, 1 and 2 (what sshd gives a forced command)."""

    def __init__(self, stdin: int = 0, stdout: int = 1, stderr: int = 2) -> None:
        self._in, self._out, self._err = stdin, stdout, stderr

    def recv(self, nbytes: int) -> bytes:
        return os.read(self._in, nbytes)

    def sendall(self, data: bytes) -> None:
        _write_all(self._out, data)

    def sendall_stderr(self, data: bytes) -> None:
        _write_all(self._err, data)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def peer_address(environ: Mapping[str, str]) -> str:
    """The client's IP from SSH_CONNECTION (`client_ip client_port server_ip server_port`)."""
    parts = environ.get("SSH_CONNECTION", "").split()
    return parts[0] if parts else "local"


def needs_plugins(command: str) -> bool:
    """Whether COMMAND needs the push hooks and ssh commands that builds/deploy add.

    sshd starts one process per connection, and importing buildqueue (redis, rq) costs more
    than serving a clone: clones, archives and the built-in commands do without. `help`
    lists every command, so it needs them."""
    words = command.split()
    if not words:
        return False  # info
    verb = words[0] if not command.startswith("git ") else "git-" + words[1] if len(words) > 1 else ""
    if verb in ("git-upload-pack", "git-upload-archive"):
        return False
    if verb == "git-receive-pack" or verb == "help":
        return True
    return verb not in {c.name for c in commands.core_commands()}


def check_user(user: str) -> str:
    if not _USER.match(user):
        raise ValueError(f"invalid user name {user!r} in the forced command")
    return user


def run(settings: Settings, user: str, environ: Mapping[str, str],
        chan: session.ByteChannel | None = None, table: commands.CommandTable | None = None,
        hooks: Sequence[PushHook] = ()) -> int:
    """Serve one sshd session for USER with TABLE's commands and HOOKS (from gitserve.app);
    returns the exit status for sshd to pass on."""
    chan = chan or StdioChannel()
    command = environ.get("SSH_ORIGINAL_COMMAND", "")
    env = {"GIT_PROTOCOL": environ["GIT_PROTOCOL"]} if environ.get("GIT_PROTOCOL") else {}
    user = admin.BUILDER if user == admin.BUILDER else user
    try:
        return session.run(settings, chan, command, user, peer_address(environ), env, table, hooks)
    except _CLIENT_GONE as exc:
        log.info("session of %s ended early: %s", user, exc or type(exc).__name__)
        return 1
    except Exception:  # one clear line for the client, the details in the log
        log.exception("command %r failed for %s", command, user)
        try:
            chan.sendall_stderr(b"FATAL: internal server error (see the server log)\n")
        except OSError:
            pass
        return 1
