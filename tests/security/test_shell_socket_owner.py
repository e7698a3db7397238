"""The fast forced command and a shell.sock that is not its server's (redteam2).

sshd runs `shellclient.py --home HOME shell USER` for every connection; it connected to
HOME/run/shell.sock and sent its three descriptors (the ssh user's session) and the
client's command with the first message, before knowing who listened there. The server
checks its peer's uid (SO_PEERCRED), the client did not: a socket bound there by another
uid (a run directory left group-writable, a HOME on shared storage, a server started by the
wrong account) got every user's session: it read what they pushed, answered their fetches
and set their exit status. Now the client hands off only to a listener of its own uid and
otherwise serves the connection itself (exec of the full `gitserve shell`).
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)


def impostor(path: Path, uid: int, got: list[str]) -> threading.Thread:
    """A listener on PATH that another uid owns (created by a child that dropped to UID, so
    SO_PEERCRED reports UID); it takes whatever descriptors come and answers 'accepted, 0'."""
    ready = threading.Event()

    def run() -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the other account
            try:
                os.close(r)
                os.setgid(uid)
                os.setuid(uid)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.bind(str(path))
                sock.listen(1)
                os.write(w, b"1")
                conn, _ = sock.accept()
                conn.settimeout(5)
                try:
                    msg, anc, _f, _a = conn.recvmsg(65536, socket.CMSG_SPACE(12))
                    fds = [fd for lvl, kind, data in anc if kind == socket.SCM_RIGHTS
                           for fd in struct.unpack(f"{len(data) // 4}i", data)]
                    os.write(w, b"F" if fds else b"N")
                    if fds:
                        os.write(fds[1], b"hijacked\n")
                    conn.sendall(b"A" + struct.pack("!i", 0))
                except OSError:
                    os.write(w, b"N")
            finally:
                os._exit(0)
        os.close(w)
        ready.set() if os.read(r, 1) == b"1" else None
        got.append(os.read(r, 1).decode())
        os.close(r)
        os.waitpid(pid, 0)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.ready = ready  # type: ignore[attr-defined]
    return t


def test_the_fast_client_hands_nothing_to_another_uids_socket(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("another uid's socket needs root to make")
    from gitserve.ssh import shellclient

    run = tmp_path / "run"
    run.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(run, 0o777)  # the weak spot: a run directory another account may write
    got: list[str] = []
    t = impostor(run / "shell.sock", 65534, got)
    assert t.ready.wait(10)  # type: ignore[attr-defined]
    out_r, out_w = os.pipe()
    saved = os.dup(1)
    os.dup2(out_w, 1)  # the session's stdout, as sshd's pipe
    try:
        status = shellclient.hand_off(str(run / "shell.sock"), "alice",
                                      {"SSH_ORIGINAL_COMMAND": "git-receive-pack 'secret'"})
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(out_w)
    t.join(10)
    os.set_blocking(out_r, False)
    try:
        seen = os.read(out_r, 100)
    except BlockingIOError:
        seen = b""
    os.close(out_r)
    assert status is None and got != ["F"] and b"hijacked" not in seen, (status, got, seen)
