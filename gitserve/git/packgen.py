"""Pack generation for upload-pack (clone/fetch), behind one function.

dulwich stays the protocol engine (ref advertisement, want/have negotiation, shallow,
acks); only the pack is made here, by one of two routes (setting [server] pack_backend):
- "git": `git pack-objects --revs --stdout` in a subprocess, exactly what native
  upload-pack runs: bitmaps, commit-graph and delta reuse, on its own core (no GIL);
- "dulwich": pure Python for hosts without a git binary: a git-like revision walk
  (packwalk.py) and a writer that copies stored entries and deltas (packcopy.py), sending a
  repacked pack whole when it is exactly what a clone needs (repack.py keeps that so);
- "auto" (default): "git" when a git binary is on PATH, else "dulwich".
Clones (requests without haves) go through a cache of generated packs (packcache.py).

Hook-up: the upload-pack handler calls `handle_upload_pack(handler, settings)` in place of
dulwich's `UploadPackHandler.handle` body.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitserve.git import filters, repack
from gitserve.git.filters import ObjectFilter
from gitserve.git.packcache import PackCache, cache_key
from gitserve.git.packcopy import FRAME, stored_pack
from gitserve.git.packcopy import write_pack as write_pack_copy
from gitserve.git.packwalk import Walker
from gitserve.settings import Settings
from .errors import PackGenError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "dulwich", "git")


@dataclass
class PackRequest:
    wants: list[bytes]
    haves: list[bytes] = field(default_factory=list)
    shallow: set[bytes] = field(default_factory=set)  # boundary commits: parents not sent
    thin: bool = False
    ofs_delta: bool = True
    include_tag: bool = False
    tagged: dict[bytes, bytes] = field(default_factory=dict)  # peeled sha -> tag sha
    filter: ObjectFilter | None = None  # partial clone (filters.py)


def git_binary() -> str | None:
    return shutil.which("git")


def choose_backend(setting: str) -> str:
    """The route to use for SETTING; a wrong setting is an error, not a silent default."""
    if setting not in BACKENDS:
        raise PackGenError(f"pack_backend must be one of {', '.join(BACKENDS)}, got {setting!r}")
    if setting == "auto":
        return "git" if git_binary() else "dulwich"
    if setting == "git" and not git_binary():
        raise PackGenError("pack_backend = git but no git binary is on PATH")
    return setting


def repo_dir(repo: Any) -> str | None:
    path = getattr(repo, "path", None)
    if path is None and hasattr(repo, "repo"):
        path = getattr(repo.repo, "path", None)
    if path is None:
        return None
    return str(path)


_caches: dict[str, PackCache] = {}


def pack_cache(settings: Settings | None) -> PackCache | None:
    """The pack cache of a server home (HOME/cache/packs), shared by all connections."""
    if settings is None:
        return None
    root = str(Path(settings.home) / "cache" / "packs")
    cache = _caches.get(root)
    if cache is None:
        cache = _caches[root] = PackCache(Path(root))
    return cache


def generate(repo: Any, req: PackRequest, write: Callable[[bytes], None],
             progress: Callable[[bytes], None] | None = None, *, backend: str = "auto",
             cache: PackCache | None = None) -> None:
    """Write the pack for REQ to WRITE (in chunks of at most one side-band frame)."""
    route = choose_backend(backend)
    path = repo_dir(repo)
    if route == "git" and path is None:
        route = "dulwich"
    if cache is not None and path is not None and not req.haves:
        flags = [route, "thin" if req.thin else "", "ofs" if req.ofs_delta else ""]
        key = cache_key(path, req.wants, req.shallow, req.filter.spec if req.filter else None,
                        flags, req.tagged.items() if req.include_tag else ())
        if _send_cached(cache, key, write, progress):
            return
        with cache.single_flight(key):
            if _send_cached(cache, key, write, progress):
                return
            with cache.recording(key, write) as tee:
                _generate(route, repo, path, req, tee, progress)
        return
    _generate(route, repo, path, req, write, progress)


def _send_cached(cache: PackCache, key: str, write: Callable[[bytes], None],
                 progress: Callable[[bytes], None] | None) -> bool:
    """Send a cached pack; the progress a client asked for is the summary git would print."""
    first: list[bytes] = []

    def peek(data: bytes) -> None:
        if not first:
            first.append(data[:12])
            if progress is not None and len(data) >= 12:
                count = int.from_bytes(data[8:12], "big")
                progress(summary(count, count))
        write(data)

    return cache.send(key, peek)


def summary(count: int, reused: int) -> bytes:
    """git pack-objects' progress lines, all at 100%, for a pack of COUNT objects."""
    return (f"Enumerating objects: {count}, done.\n"
            f"Counting objects: 100% ({count}/{count}), done.\n"
            f"Compressing objects: 100% ({count}/{count}), done.\n"
            f"Total {count} (delta 0), reused {reused} (delta 0), pack-reused {reused}\n"
            ).encode()


def _generate(route: str, repo: Any, path: str | None, req: PackRequest,
              write: Callable[[bytes], None], progress: Callable[[bytes], None] | None) -> None:
    if route == "git":
        assert path is not None
        _generate_git(path, req, write, progress)
    else:
        _generate_dulwich(repo, req, write, progress)


def _generate_git(path: str, req: PackRequest, write: Callable[[bytes], None],
                  progress: Callable[[bytes], None] | None) -> None:
    """Run `git pack-objects` as native upload-pack does, streaming its stdout."""
    git = git_binary()
    assert git is not None
    args = [git, "--git-dir", path]
    if req.shallow:
        args += ["--shallow-file", ""]  # the grafts come from our --shallow lines
    args += ["pack-objects", "--revs", "--stdout"]
    if req.thin:
        args.append("--thin")
    if req.shallow:
        args.append("--shallow")
    args.append("--progress" if progress is not None else "-q")
    if req.ofs_delta:
        args.append("--delta-base-offset")
    if req.include_tag:
        args.append("--include-tag")
    if req.filter is not None:
        args.append(f"--filter={req.filter.spec}")
    lines = [b"--shallow " + s for s in sorted(req.shallow)]
    lines += list(req.wants)
    lines.append(b"--not")
    lines += list(req.haves)
    stdin = b"\n".join(lines) + b"\n\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, bufsize=0)
    lock = threading.Lock()
    errors: list[bytes] = []

    def relay_stderr() -> None:
        assert proc.stderr is not None
        relay_to = progress
        while True:
            data = os.read(proc.stderr.fileno(), 4096)
            if not data:
                break
            errors.append(data)
            del errors[:-8]
            if relay_to is not None:
                try:
                    with lock:
                        relay_to(data)
                except Exception:  # a client that went away stops wanting progress
                    relay_to = None

    def feed() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass

    relay = threading.Thread(target=relay_stderr, daemon=True)
    relay.start()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    assert proc.stdout is not None
    out = proc.stdout
    try:
        buf = bytearray()
        while True:
            data = os.read(out.fileno(), 1 << 20)
            if not data:
                break
            buf += data
            if len(buf) >= FRAME:
                n = len(buf) - len(buf) % FRAME
                with lock:
                    for i in range(0, n, FRAME):
                        write(bytes(buf[i:i + FRAME]))
                del buf[:n]
        if buf:
            with lock:
                write(bytes(buf))
        rc = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        feeder.join(timeout=5)
        relay.join(timeout=5)
        out.close()
    if rc != 0:
        msg = b"".join(errors).decode(errors="replace").strip().splitlines()
        raise PackGenError("git pack-objects failed: " + (msg[-1] if msg else f"exit {rc}"))


def _generate_dulwich(repo: Any, req: PackRequest, write: Callable[[bytes], None],
                      progress: Callable[[bytes], None] | None) -> None:
    store = repo.object_store
    walker = Walker(store.get_raw, lambda sha: sha in store)
    whole = None
    tips: list[bytes] = []
    if not req.haves and not req.shallow and req.filter is None:
        found = repack.covering_pack(store)
        if found is not None:
            pack, tips = found
            whole = stored_pack(pack)
    result = walker.walk(
        req.wants, req.haves, shallow=req.shallow, covered_tips=tips,
        covered=whole.__contains__ if whole is not None else None,
        tagged=req.tagged if req.include_tag else None)
    if not result.covered_ok:
        whole = None
    if req.filter is not None:
        explicit = {w for w in req.wants if result.objects.get(w) not in (None, 1)}
        filters.apply(req.filter, result.objects, store.get_raw,
                      lambda sha: walker.commit(sha)[0], explicit)
    if whole is None and not req.haves and not req.shallow and req.filter is None:
        repack.want_covering_pack(repo)  # next clone can be a copy
    count = len(result.objects) + (whole.count if whole else 0)
    if progress is not None:
        progress(f"Enumerating objects: {count}, done.\n"
                 f"Counting objects: 100% ({count}/{count}), done.\n".encode())
    write_pack_copy(store, result.objects, write, whole=whole)
    if progress is not None:
        reused = whole.count if whole else 0
        progress(f"Compressing objects: 100% ({count}/{count}), done.\n"
                 f"Total {count} (delta 0), reused {count} (delta 0), "
                 f"pack-reused {reused}\n".encode())


# --- the seam the SSH server started with ------------------------------------------------

def write_pack(write: Callable[[bytes], object], repo: Any, object_ids: Any) -> None:
    """Pack of OBJECT_IDS ((sha, hint) pairs as dulwich's finder yields) to WRITE, copying
    stored entries. Kept for callers that count objects themselves; the upload-pack handler
    uses `handle_upload_pack`, which also replaces dulwich's slow counting."""
    from gitserve.git.packwalk import BLOB

    objects = {(oid[0] if isinstance(oid, tuple) else oid): BLOB for oid in object_ids}
    write_pack_copy(repo.object_store, objects, write)  # type: ignore[arg-type]
