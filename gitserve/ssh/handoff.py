"""`gitserve shell` hands its connection to the running server instead of serving it itself.

Behind the system OpenSSH, sshd starts `gitserve shell USER` for every connection. Starting
Python and importing the git and access code costs more than most requests take to serve,
so when `gitserve serve` runs for the same home, the shell only passes its three file
descriptors (sshd's pipes: stdin, stdout, stderr), the user from its forced command and the
client's environment over HOME/run/shell.sock (SCM_RIGHTS), and waits for the exit status.
The server runs the very same session code (ssh/shell.run) in a thread, with its own push
hooks and command table, and counts the connection in its /metrics as `transport="sshd"`.

Only a process of the server's own uid is served (SO_PEERCRED; the socket is 0600 in the
0700 run directory): such a process can read every repository anyway. Without a server (or
with one that declines), the shell serves the connection itself, as before.

The client half imports nothing but the standard library: it is all sshd's process runs.
"""

from __future__ import annotations

import array
import json
import logging
import os
import re
import socket
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from . import shellclient
from .shellclient import PASSED, recv_exact

if TYPE_CHECKING:  # this module stays stdlib-only at run time (the shell's fast path)
    from gitserve.git.pushhooks import PushHook
    from gitserve.metrics import Metrics
    from gitserve.settings import Settings
    from gitserve.ssh.cmd.base import CommandTable

log = logging.getLogger(__name__)

SOCKET = "shell.sock"
MAX_REQUEST = 64 * 1024
ACCEPTED, DECLINED = b"A", b"D"
# a keydir user name (Gitolite's $USERNAME_PATT) or the internal builder identity
_USER = re.compile(r"^(?:[0-9a-zA-Z][-0-9a-zA-Z._@+]*|:builder)$")


def socket_path(run_dir: Path) -> Path:
    return run_dir / SOCKET


# --- the shell's side ------------------------------------------------------------------


def hand_off(run_dir: Path, user: str, environ: dict[str, str] | Any) -> int | None:
    """Let the running server serve this connection; its exit status, or None when there is
    no server to take it (then the caller serves it, nothing having been read or written).
    The forced command written by `admin authorized-keys` does the same in shellclient.py,
    started without site-packages; this is the way in for `gitserve shell`."""
    path = socket_path(run_dir)
    if len(os.fsencode(path)) > 100 or not _USER.match(user):
        return None
    return shellclient.hand_off(str(path), user, {k: environ[k] for k in PASSED if k in environ})


# --- the server's side -----------------------------------------------------------------


class _Sshd:
    """The server's Metrics, with the session's transport label "ssh" counted as "sshd"."""

    def __init__(self, metrics: Any) -> None:
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return _Relabel(getattr(self._metrics, name))


class _Relabel:
    def __init__(self, metric: Any) -> None:
        self._metric = metric

    def labels(self, *values: str) -> Any:
        if values and values[0] == "ssh":
            values = ("sshd", *values[1:])
        return self._metric.labels(*values)


class HandoffService:
    """Serves the connections `gitserve shell` hands over (a Service of gitserve.app)."""

    summary = ""

    def __init__(self, settings: Settings, table: CommandTable, hooks: Sequence[PushHook],
                 metrics: Metrics | None) -> None:
        self.settings, self.table, self.hooks = settings, table, list(hooks)
        self.metrics = _Sshd(metrics) if metrics is not None else None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        path = socket_path(self.settings.run_dir)
        if len(os.fsencode(path)) > 100:
            log.warning("%s: path too long for a unix socket; `gitserve shell` serves "
                        "connections itself", path)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a previous server's (this one holds the pid file)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o600)  # (the run directory is the server user's too)
        sock.listen(64)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="shell-handoff",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                socket_path(self.settings.run_dir).unlink(missing_ok=True)
            self._sock = None

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._serve, args=(conn,), name="shell-session",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            conn.settimeout(10)
            msg, ancdata, _flags, _addr = conn.recvmsg(MAX_REQUEST + 4,
                                                       socket.CMSG_SPACE(3 * 4))
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    got = array.array("i")
                    got.frombytes(data[: len(data) - len(data) % got.itemsize])
                    fds.extend(got)
            request = self._request(conn, msg)
            if uid != os.getuid() or request is None or len(fds) != 3:
                log.warning("shell handoff refused (uid %s, %d descriptors)", uid, len(fds))
                conn.sendall(DECLINED)
                return
            from . import shell

            conn.settimeout(None)
            conn.sendall(ACCEPTED)
            # from here the channel owns the descriptors and closes them once, after the
            # session (sshd sees it end once the shell and we let go)
            chan, fds = shell.StdioChannel(*fds), []
            try:
                status = self._run(request, chan)
            finally:
                chan.close()
            try:
                conn.sendall(struct.pack("!i", status))
            except OSError:
                pass  # the shell was killed meanwhile: nobody to tell
        except Exception:  # noqa: BLE001 - one bad handoff must not take the server down
            log.exception("shell handoff failed")
        finally:
            for fd in fds:
                os.close(fd)
            conn.close()

    def _request(self, conn: socket.socket, msg: bytes) -> dict[str, str] | None:
        if len(msg) < 4:
            return None
        (size,) = struct.unpack("!I", msg[:4])
        if size > MAX_REQUEST:
            return None
        body = msg[4:]
        if len(body) < size:
            body += recv_exact(conn, size - len(body))
        try:
            request = json.loads(body[:size])
        except ValueError:
            return None
        if not isinstance(request, dict) or not _USER.match(str(request.get("user", ""))):
            return None
        return {k: str(v) for k, v in request.items()}

    def _run(self, request: dict[str, str], chan: Any) -> int:
        from . import shell

        environ = {k: request[k] for k in PASSED if request.get(k)}
        return shell.run(self.settings, request["user"], environ, chan=chan,
                         table=self.table, hooks=self.hooks, metrics=self.metrics)
