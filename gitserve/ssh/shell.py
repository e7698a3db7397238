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
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from dulwich.errors import HangupException

from gitserve import adminrepo, shellmetrics
from gitserve.git.pushhooks import PushContext, PushHook, RefUpdate
from gitserve.settings import Settings
from gitserve.sigevent import SignalEvent

from . import session
from .cmd import base as commands
from .cmd import builtin

log = logging.getLogger(__name__)

# a keydir user name (Gitolite's $USERNAME_PATT) or the internal builder identity
_USER = re.compile(r"^(?:[0-9a-zA-Z][-0-9a-zA-Z._@+]*|:builder)$")
_CLIENT_GONE = (BrokenPipeError, ConnectionError, EOFError, HangupException, socket.timeout)


class StdioChannel:
    """A ByteChannel over file descriptors 0, 1 and 2 (what sshd gives a forced command).

    `close()` may come from another thread while one waits in `recv` (a site command's stdin
    pump, ssh/cmd/program.py): it wakes the waiter through an event's pipe, the waiter gets
    EOF and never reads the descriptor number again, which the server may already have given
    to another connection (ssh/handoff.py). (The waiter used to hold a lock across 250 ms
    polls; close() waited for it, and a waiter that took the lock straight back starved it:
    a session whose command had ended stayed open, seen once for 30 s in CI.)"""

    def __init__(self, stdin: int = 0, stdout: int = 1, stderr: int = 2) -> None:
        self._in, self._out, self._err = stdin, stdout, stderr
        self._lock = threading.Lock()    # held by a reader for its whole recv
        self._closing = SignalEvent()    # set before the lock is taken: wakes and stops recv
        self._closed = False

    def recv(self, nbytes: int) -> bytes:
        with self._lock:
            if self._closing.is_set() or self._closed:
                return b""
            poller = select.poll()
            poller.register(self._in, select.POLLIN | select.POLLHUP | select.POLLERR)
            poller.register(self._closing.fileno(), select.POLLIN)
            while True:
                ready = {fd for fd, _ in poller.poll()}
                if self._closing.is_set():
                    return b""
                if self._in in ready:
                    return os.read(self._in, nbytes)

    def close(self) -> None:
        """Close the three descriptors (a handed-over connection's: the server's copies)."""
        self._closing.set()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in {self._in, self._out, self._err}:
                os.close(fd)
            self._closing.close()

    def sendall(self, data: bytes) -> None:
        _write_all(self._out, data)

    def sendall_stderr(self, data: bytes) -> None:
        _write_all(self._err, data)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class DetachedRepackAfterPush:
    """PushHook standing in for git.repack.RepackAfterPush under `gitserve shell`.

    The built-in server repacks after a push in a background thread of its long-lived
    process; a forced command exits as soon as the push is answered, which would kill that
    thread. So the repack runs in a detached child: its own session and no stdio, so sshd
    (which waits for the session's pipes to close) and the pusher never wait for it. The
    repository's upkeep lock serialises it with any other repack or gc."""

    def before_update(self, ctx: PushContext, update: RefUpdate) -> str | None:
        return None

    def after_push(self, ctx: PushContext, updates: list[RefUpdate]) -> None:
        if updates:
            spawn_repack(str(ctx.repo_path))


_REPACK = ("import sys, time\n"
           "from gitserve.git.repack import DELAY, repack_now\n"
           "time.sleep(DELAY)\n"
           "repack_now(sys.argv[1])\n")


def spawn_repack(path: str) -> None:
    try:
        subprocess.Popen([sys.executable, "-c", _REPACK, path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True)
    except OSError as exc:  # the push itself went through; the next gc packs it
        log.warning("cannot start the repack of %s: %s", path, exc)


def for_shell(hooks: Sequence[PushHook]) -> list[PushHook]:
    """gitserve.app's push hooks with the in-process repack replaced by the detached one."""
    from gitserve.git.repack import RepackAfterPush

    return [DetachedRepackAfterPush() if isinstance(h, RepackAfterPush) else h for h in hooks]


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
    return verb not in {c.name for c in builtin.core_commands()}


def check_user(user: str) -> str:
    if not _USER.match(user):
        raise ValueError(f"invalid user name {user!r} in the forced command")
    return user


def run(settings: Settings, user: str, environ: Mapping[str, str],
        chan: session.ByteChannel | None = None, table: commands.CommandTable | None = None,
        hooks: Sequence[PushHook] = (), metrics: Any = None) -> int:
    """Serve one sshd session for USER with TABLE's commands and HOOKS (from gitserve.app);
    returns the exit status for sshd to pass on. METRICS: the server's, when it serves a
    handed-over connection (ssh/handoff.py); else the session's counts go to the spool."""
    chan = chan or StdioChannel()
    command = environ.get("SSH_ORIGINAL_COMMAND", "")
    env = {"GIT_PROTOCOL": environ["GIT_PROTOCOL"]} if environ.get("GIT_PROTOCOL") else {}
    user = adminrepo.BUILDER if user == adminrepo.BUILDER else user
    counts = metrics if metrics is not None else shellmetrics.SessionCounts()
    counts.connections.labels("ssh").inc()
    try:
        return session.run(settings, chan, command, user, peer_address(environ), env, table,
                           hooks, metrics=counts)
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
    finally:
        if isinstance(counts, shellmetrics.SessionCounts):
            shellmetrics.flush(settings.run_dir, counts)
