"""LFS pointer files in a repository: which objects its history references.

Parsing is dulwich's (`dulwich.lfs.LFSPointer`); finding the candidates is git's own object
walk (`rev-list --objects`, then `cat-file --batch-check` for sizes), so only blobs small
enough to be a pointer (git-lfs writes them under 200 bytes; 1024 is its own parse limit) are
ever read. Used by lfs-gc (what no ref reaches), by builds (which files to fill in) and by the
web UI (which files to mark).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from dulwich.lfs import LFSPointer

from .store import valid_oid

MAX_POINTER = 1024


def parse(data: bytes) -> tuple[str, int] | None:
    """(oid, size) if DATA is an LFS pointer, else None."""
    if len(data) > MAX_POINTER or not data.startswith(b"version "):
        return None
    pointer = LFSPointer.from_bytes(data)
    if pointer is None or not valid_oid(pointer.oid):
        return None
    return pointer.oid, pointer.size


def _small_blobs(repo: Path, revs: Iterable[str]) -> list[str]:
    walk = subprocess.run(["git", "-C", str(repo), "rev-list", "--objects", *revs],
                          capture_output=True, check=True)
    names = b"\n".join(line.split(b" ", 1)[0] for line in walk.stdout.splitlines() if line)
    if not names:
        return []
    sizes = subprocess.run(["git", "-C", str(repo), "cat-file",
                            "--batch-check=%(objectname) %(objecttype) %(objectsize)"],
                           input=names + b"\n", capture_output=True, check=True)
    small = []
    for line in sizes.stdout.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "blob" and int(parts[2]) <= MAX_POINTER:
            small.append(parts[0])
    return small


def _read_blobs(repo: Path, shas: list[str]) -> Iterable[bytes]:
    if not shas:
        return
    out = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch"],
                         input=("\n".join(shas) + "\n").encode(), capture_output=True,
                         check=True).stdout
    pos = 0
    while pos < len(out):
        eol = out.index(b"\n", pos)
        header = out[pos:eol].split()
        size = int(header[2])
        yield out[eol + 1:eol + 1 + size]
        pos = eol + 1 + size + 1


def referenced(repo: Path, revs: Iterable[str] = ("--all",)) -> set[str]:
    """Every LFS oid a pointer reachable from REVS names."""
    found = set()
    for data in _read_blobs(repo, _small_blobs(repo, revs)):
        parsed = parse(data)
        if parsed:
            found.add(parsed[0])
    return found


def entries(repo: Path, commit: str, recursive: bool = True,
            limit: int = 0) -> list[dict[str, object]]:
    """COMMIT's tree as git lists it (ls-tree -l): path, mode, kind, size, and for a blob that
    is an LFS pointer `lfs` = (oid, size). Blob contents are read only for blobs small enough
    to be a pointer."""
    argv = ["git", "-C", str(repo), "ls-tree", "-l", "-z", commit]
    if recursive:
        argv.insert(5, "-r")
    listing = subprocess.run(argv, capture_output=True, check=True).stdout
    rows: list[dict[str, object]] = []
    small: list[int] = []
    for raw in listing.split(b"\0"):
        if not raw:
            continue
        meta, _, raw_path = raw.partition(b"\t")
        mode, kind, sha, size = meta.split()
        row: dict[str, object] = {"path": raw_path.decode("utf-8", "surrogateescape"),
                                  "mode": mode.decode(), "kind": kind.decode(),
                                  "sha": sha.decode(),
                                  "size": int(size) if size.isdigit() else None, "lfs": None}
        if kind == b"blob" and mode in (b"100644", b"100755") and size.isdigit() and \
                int(size) <= MAX_POINTER:
            small.append(len(rows))
        rows.append(row)
        if limit and len(rows) >= limit:
            break
    blobs = list(_read_blobs(repo, [str(rows[i]["sha"]) for i in small]))
    for i, data in zip(small, blobs):
        rows[i]["lfs"] = parse(data)
    return rows


def in_tree(repo: Path, commit: str) -> list[tuple[str, str, int]]:
    """(path, oid, size) of every LFS pointer file in COMMIT's tree (REPO: a repository or a
    work tree whose .git can read it)."""
    found: list[tuple[str, str, int]] = []
    for row in entries(repo, commit):
        lfs = row["lfs"]
        if isinstance(lfs, tuple):
            found.append((str(row["path"]), lfs[0], lfs[1]))
    return found
