"""The forced command sshd runs for each connection: hand it to the running server, fast.

`gitserve admin authorized-keys` writes
    command="PYTHON -I -S .../gitserve/ssh/shellclient.py --home HOME shell USER"
Started that way (isolated, no site-packages) Python is up in ~10 ms instead of ~50, and this
file imports only modules built into the interpreter (posix, _socket, _struct): it passes
sshd's three descriptors, USER and the client's SSH_ORIGINAL_COMMAND, SSH_CONNECTION and
GIT_PROTOCOL to `gitserve serve` over HOME/run/shell.sock (ssh/handoff.py serves them) and
exits with the status the server sends back. It parses nothing the ssh user sends: the
command line is the server's business (the server checks the user name again, and serves
only its own uid; this side hands off only to a listener of its own uid, SO_PEERCRED).
When no server takes the connection, the full `gitserve shell` is exec'd
with the same arguments, from the same gitserve this file belongs to, and serves it itself.
"""

from __future__ import annotations

import _socket
import _struct
import posix
import sys

PASSED = ("SSH_ORIGINAL_COMMAND", "SSH_CONNECTION", "GIT_PROTOCOL")
ACCEPTED = b"A"
# the full gitserve, this file's own copy first on sys.path (never the session's cwd)
_BOOT = "import sys; sys.path[0] = {root!r}; from gitserve.cli import main; main()"


def _json_string(text: str) -> str:
    """TEXT as a JSON string that json.loads returns unchanged (lone surrogates included:
    os.environ decodes undecodable bytes to them), without importing json (and re)."""
    out = ['"']
    for ch in text:
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o > 0xFFFF:
            o -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 + (o >> 10), 0xDC00 + (o & 0x3FF)))
        else:
            out.append("\\u%04x" % o)
    out.append('"')
    return "".join(out)


def request(user: str, environ: dict[str, str]) -> bytes:
    """The handoff request: a length-prefixed JSON object (ssh/handoff.py reads it)."""
    fields = [("user", user)] + [(k, environ.get(k, "")) for k in PASSED]
    body = ("{" + ", ".join(f"{_json_string(k)}: {_json_string(v)}" for k, v in fields)
            + "}").encode("ascii")
    return _struct.pack("!I", len(body)) + body


def recv_exact(sock: _socket.socket, n: int) -> bytes:
    """N bytes from SOCK, fewer only when the peer closed (ssh/handoff.py reads with it too)."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def hand_off(path: str, user: str, environ: dict[str, str]) -> int | None:
    """Let the server listening on PATH serve this connection (descriptors 0, 1, 2); its
    exit status, or None when no server took it (nothing was read or written then)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
            # only our own server gets the session: a socket another uid bound there (a
            # writable run directory) would otherwise take every user's descriptors
            peer = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
            if _struct.unpack("3i", peer)[1] != posix.getuid():
                return None
            sock.sendmsg([request(user, environ)],
                         [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _struct.pack("3i", 0, 1, 2))])
            answer = recv_exact(sock, 1)
        except OSError:
            return None  # no server, a stale socket, or it went away: serve it ourselves
        if answer != ACCEPTED:
            return None  # declined before touching the descriptors
        status = recv_exact(sock, 4)
        # the server took the connection: whatever happens now, it is not ours to serve
        return _struct.unpack("!i", status)[0] if len(status) == 4 else 1
    finally:
        sock.close()


def _environ() -> dict[str, str]:
    env = posix.environ
    return {k: env[k.encode()].decode("utf-8", "surrogateescape")
            for k in PASSED if k.encode() in env}


def main(argv: list[str]) -> int:
    args = argv[1:]
    if len(args) == 4 and args[0] == "--home" and args[2] == "shell":
        status = hand_off(args[1].rstrip("/") + "/run/shell.sock", args[3], _environ())
        if status is not None:
            return status
    # no server: the full gitserve, from the tree this file is in (.../gitserve/ssh/ -> ...)
    root = __file__.rsplit("/", 3)[0] if __file__.count("/") >= 3 else "."
    python = sys.executable
    try:
        posix.execv(python, [python, "-c", _BOOT.format(root=root), *args])
    except OSError as exc:
        sys.stderr.write(f"gitserve: cannot start {python}: {exc.strerror}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
