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

from dulwich.protocol import (
    CAPABILITY_INCLUDE_TAG,
    CAPABILITY_NO_DONE,
    CAPABILITY_NO_PROGRESS,
    CAPABILITY_OFS_DELTA,
    CAPABILITY_THIN_PACK,
)

from gitserve.errors import GitserveError
from gitserve.settings import Settings
from gitserve.git import repack
from gitserve.git.packcache import PackCache, cache_key
from gitserve.git.packcopy import FRAME, stored_pack
from gitserve.git.packcopy import write_pack as write_pack_copy
from gitserve.git.packwalk import Walker

log = logging.getLogger(__name__)

BACKENDS = ("auto", "dulwich", "git")


class PackGenError(GitserveError):
    """The pack could not be generated (the client sees the message)."""


@dataclass
class PackRequest:
    wants: list[bytes]
    haves: list[bytes] = field(default_factory=list)
    shallow: set[bytes] = field(default_factory=set)  # boundary commits: parents not sent
    thin: bool = False
    ofs_delta: bool = True
    include_tag: bool = False
    tagged: dict[bytes, bytes] = field(default_factory=dict)  # peeled sha -> tag sha


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


def pack_cache(settings: Settings) -> PackCache | None:
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
        key = cache_key(path, req.wants, req.shallow, None, flags,
                        req.tagged.items() if req.include_tag else ())
        if cache.send(key, write):
            return
        with cache.single_flight(key):
            if cache.send(key, write):
                return
            with cache.recording(key, write) as tee:
                _generate(route, repo, path, req, tee, progress)
        return
    _generate(route, repo, path, req, write, progress)


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
    if not req.haves and not req.shallow:
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
    if whole is None and not req.haves and not req.shallow:
        repack.want_covering_pack(repo)  # next clone can be a copy
    count = len(result.objects) + (whole.count if whole else 0)
    if progress is not None:
        progress(f"Counting objects: {count}, done.\n".encode())
    write_pack_copy(store, result.objects, write, whole=whole)
    if progress is not None:
        reused = "whole stored pack" if whole else f"{len(result.objects)} objects"
        progress(f"Total {count} (sent {reused})\n".encode())


# --- the upload-pack hook-up ------------------------------------------------------------

def handle_upload_pack(handler: Any, settings: Settings | None = None) -> None:
    """Body for dulwich's `UploadPackHandler.handle`: the same negotiation, our pack."""
    from dulwich.server import _ProtocolGraphWalker

    repo = handler.repo
    handler._processing_have_lines = True
    walker = _ProtocolGraphWalker(handler, repo.object_store, repo.get_peeled,
                                  repo.refs.get_symrefs)
    store = repo.object_store
    refs = {ref: sha for ref, sha in repo.get_refs().items() if sha in store}
    wants = walker.determine_wants(refs, None)
    if not wants:
        return
    unshallow: set[bytes] = getattr(walker, "unshallow", set())
    haves = store.find_common_revisions(walker)
    if walker.shallow or unshallow:
        haves = []  # as dulwich: the haves do not tell what a shallow client lacks
    if not walker.handle_done(not handler.has_capability(CAPABILITY_NO_DONE),
                              handler._done_received):
        return
    handler._start_pack_send_phase()
    if getattr(handler, "filter_spec", None) is not None:
        _filtered_pack(handler, walker, wants, haves)
        handler.proto.write_pkt_line(None)
        return
    include_tag = handler.has_capability(CAPABILITY_INCLUDE_TAG)
    req = PackRequest(
        wants=list(wants), haves=list(haves), shallow=set(walker.shallow),
        thin=handler.has_capability(CAPABILITY_THIN_PACK),
        ofs_delta=handler.has_capability(CAPABILITY_OFS_DELTA),
        include_tag=include_tag,
        tagged=handler.get_tagged(refs, repo=repo) if include_tag else {},
    )
    progress = None if handler.has_capability(CAPABILITY_NO_PROGRESS) else handler.progress
    backend = settings.server.pack_backend if settings is not None else "auto"
    generate(repo, req, handler.write_pack_data, progress, backend=backend,
             cache=pack_cache(settings) if settings is not None else None)
    handler.proto.write_pkt_line(None)


def _filtered_pack(handler: Any, walker: Any, wants: list[bytes], haves: list[bytes]) -> None:
    """Partial clone (filter): dulwich's own object selection and writer, unchanged."""
    from dulwich import server as dserver

    repo = handler.repo
    finder = dserver.MissingObjectFinder(
        repo.object_store, haves=haves, wants=wants, shallow=walker.shallow,
        progress=handler.progress, get_tagged=handler.get_tagged)
    object_ids = list(finder)
    spec = handler.filter_spec

    def needs_paths(f: Any) -> bool:
        if isinstance(f, (dserver.TreeDepthFilter, dserver.SparseOidFilter)):
            return True
        if isinstance(f, dserver.CombineFilter):
            return any(needs_paths(x) for x in f.filters)
        return False

    if needs_paths(spec):
        oids = dserver.filter_pack_objects_with_paths(repo.object_store, wants, spec,
                                                       progress=handler.progress)
        object_ids = [(oid, None) for oid in oids]
    else:
        keep = set(dserver.filter_pack_objects(repo.object_store,
                                               [oid for oid, _ in object_ids], spec))
        object_ids = [(oid, hint) for oid, hint in object_ids if oid in keep]
    dserver.write_pack_from_container(handler.write_pack_data, repo.object_store, object_ids,
                                      object_format=repo.object_format)


# --- the seam the SSH server started with ------------------------------------------------

def write_pack(write: Callable[[bytes], object], repo: Any, object_ids: Any) -> None:
    """Pack of OBJECT_IDS ((sha, hint) pairs as dulwich's finder yields) to WRITE, copying
    stored entries. Kept for callers that count objects themselves; the upload-pack handler
    uses `handle_upload_pack`, which also replaces dulwich's slow counting."""
    from gitserve.git.packwalk import BLOB

    objects = {(oid[0] if isinstance(oid, tuple) else oid): BLOB for oid in object_ids}
    write_pack_copy(repo.object_store, objects, write)  # type: ignore[arg-type]
