"""A minimal client of the pure SSH protocol, for build hosts: download the LFS objects of
the commit being built from the server as the `:builder` identity, over the ssh command line
the worker already uses for git (so a remote build host needs no git-lfs and no HTTP access).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from .pktline import FLUSH, Delim, Flush, PktReader, ProtocolError, text
from .store import LfsError, LfsStore


def _status(reader: PktReader) -> tuple[int, list[str], bool]:
    """status code, arguments, and whether a delim (a body) follows."""
    first = reader.text(reader.read())
    if not first.startswith("status "):
        raise ProtocolError(f"expected a status line, got {first[:80]!r}")
    code = int(first[7:])
    args: list[str] = []
    while True:
        item = reader.read()
        if isinstance(item, Flush):
            return code, args, False
        if isinstance(item, Delim):
            return code, args, True
        args.append(reader.text(item))


def download(ssh_argv: list[str], repo: str, objects: Iterable[tuple[str, int]],
             store: LfsStore, timeout: float = 600) -> None:
    """Fetch OBJECTS ((oid, size)) of REPO into STORE through `SSH_ARGV git-lfs-transfer REPO
    download`; every object is sha256-checked by the store as it arrives."""
    wanted = [(oid, size) for oid, size in objects if not store.has(oid, size)]
    if not wanted:
        return
    proc = subprocess.Popen([*ssh_argv, "git-lfs-transfer", repo, "download"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    reader = PktReader(proc.stdout.read)
    try:
        for _ in reader.data():  # capabilities
            pass
        proc.stdin.write(text("version 1") + FLUSH)
        proc.stdin.flush()
        code, _, body = _status(reader)
        if body:
            list(reader.data())
        if code != 200:
            raise LfsError(code, "the server refused protocol version 1")
        for oid, size in wanted:
            proc.stdin.write(text(f"get-object {oid}") + text(f"size={size}") + FLUSH)
            proc.stdin.flush()
            code, _, body = _status(reader)
            if code != 200:
                message = b"".join(reader.data()).decode(errors="replace") if body else ""
                raise LfsError(code, f"object {oid}: {message.strip() or code}")
            store.receive(oid, size, reader.data())
        proc.stdin.write(text("quit") + FLUSH)
        proc.stdin.flush()
        _status(reader)
    except (EOFError, ProtocolError, BrokenPipeError) as exc:
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        raise LfsError(502, f"git-lfs-transfer: {err.splitlines()[-1] if err else exc}") \
            from None
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def fill_worktree(worktree: Path, entries: Iterable[tuple[str, str, int]],
                  store: LfsStore) -> int:
    """Replace each pointer file (path, oid, size) under WORKTREE with the object's content
    from STORE; returns how many were filled. LfsError for an object the store lacks."""
    import shutil

    count = 0
    for rel, oid, size in entries:
        if not store.has(oid, size):
            raise LfsError(404, f"LFS object {oid[:12]} of {rel} is not on the server")
        target = worktree / rel
        mode = target.stat().st_mode & 0o777
        target.unlink()
        shutil.copyfile(store.path(oid), target)
        target.chmod(mode)
        count += 1
    return count
