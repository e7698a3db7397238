"""Background repacking after pushes, and the "covering pack" record that makes a clone a copy.

Every push leaves one more pack (dulwich's receive-pack stores what the client sent); left
alone, a busy repository ends up with hundreds, and every lookup tries each pack. After a
push this module repacks the repository in the background, at most one repack per repository
at a time, coalescing pushes that arrive meanwhile (and at most one every MIN_INTERVAL s):
- with a git binary: `git repack -a -d --write-bitmap-index` (bitmaps also speed up the
  `pack-objects` route and native git on the same repository);
- without one: the reachable objects are written into one new pack by copying stored
  entries (packcopy), then the old packs are removed.

Afterwards, if the single pack holds exactly the objects reachable from the refs as they
were before the repack (checked object by object), a sidecar `pack-X.gitserve-tips` lists
those tips. packgen's pure route then answers a clone that wants all of them by sending the
stored pack unchanged.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from gitserve._compat import dulwich as dulwich_compat
from gitserve.fsutil import atomic_write
from gitserve.git import pushhooks
from gitserve.git.repolock import repo_lock

log = logging.getLogger(__name__)
SIDECAR_SUFFIX = ".gitserve-tips"
SIDECAR_MAGIC = b"gitserve-tips v1"
MIN_INTERVAL = 10.0  # seconds between two repacks of one repository
DELAY = 1.0  # let a burst of pushes land before repacking
# unreachable objects younger than this are kept (a push waiting for its gate build)
UNREACHABLE_GRACE = 24 * 3600.0
BIG_FILE = "64m"


def _sidecar_path(pack: Any) -> str:
    return dulwich_compat.pack_basename(pack) + SIDECAR_SUFFIX


def read_sidecar(pack: Any) -> list[bytes] | None:
    try:
        data = Path(_sidecar_path(pack)).read_bytes().split(b"\n")
    except OSError:
        return None
    if not data or data[0].split(b" ")[:2] != SIDECAR_MAGIC.split(b" "):
        return None
    try:
        count = int(data[0].split(b" ")[2])
    except (IndexError, ValueError):
        return None
    if count != len(pack.index):
        return None
    tips = [t for t in data[1:] if len(t) == 40]
    return tips or None


def write_sidecar(pack: Any, tips: list[bytes]) -> None:
    path = _sidecar_path(pack)
    atomic_write(path, SIDECAR_MAGIC + b" %d\n" % len(pack.index)
                 + b"".join(t + b"\n" for t in sorted(set(tips))))


def covering_pack(store: Any) -> tuple[Any, list[bytes]] | None:
    """(pack, tips) of a stored pack holding exactly the closure of TIPS, if any."""
    for pack in store.packs:
        tips = read_sidecar(pack)
        if tips is not None:
            return pack, tips
    return None


def ref_tips(repo: Any) -> list[bytes]:
    """Every ref's value (symbolic refs are the same objects); HEAD excluded."""
    return sorted({sha for ref, sha in repo.get_refs().items() if ref != b"HEAD"})


def _pack_shas(pack: Any) -> set[bytes]:
    return {sha if len(sha) == 40 else sha.hex().encode() for sha in pack.index}


def _closure(repo: Any, tips: list[bytes]) -> set[bytes]:
    """Objects reachable from TIPS: git rev-list when available, else our own walk."""
    git = shutil.which("git")
    if git:
        proc = subprocess.run([git, "--git-dir", str(repo.path), "rev-list", "--objects",
                               "--stdin"], input=b"\n".join(tips) + b"\n",
                              capture_output=True, check=True)
        return {line[:40] for line in proc.stdout.splitlines() if line}
    from gitserve.git.packwalk import Walker

    store = repo.object_store
    return set(Walker(store.get_raw, lambda s: s in store).walk(tips, []).objects)


def _hex(sha: bytes) -> bytes:
    return sha if len(sha) == 40 else sha.hex().encode()


def _pack_is_closure(repo: Any, pack: Any, tips: list[bytes]) -> bool:
    """Does PACK hold exactly the objects reachable from TIPS? In flat memory: git rev-list's
    object list, sorted by `sort` (a bounded buffer, spilling to disk), is compared line by
    line with the pack index, which is sorted already. (Two Python sets of every id took
    183 MB after a 299k-object push.) Without git or sort: the sets, on the small
    repositories a host without git serves."""
    git, sort = shutil.which("git"), shutil.which("sort")
    if not git or not sort:
        return _pack_shas(pack) == _closure(repo, tips)
    # the bitmap a repack just wrote answers the walk (0.08 s / 20 MB instead of 2 s /
    # 145 MB for 299k objects); git walks without it where there is none
    listing = subprocess.Popen([git, "--git-dir", str(repo.path), "rev-list", "--objects",
                                "--use-bitmap-index", "--stdin"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    assert listing.stdin is not None and listing.stdout is not None
    sorted_ = subprocess.Popen([sort, "-S", "16M"], stdin=listing.stdout,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env={**os.environ, "LC_ALL": "C"})
    assert sorted_.stdout is not None
    listing.stdout.close()  # sort holds it now: rev-list gets SIGPIPE if sort dies
    equal = done = False
    try:
        # rev-list reads every tip before it writes a line: no deadlock on a long stdin
        listing.stdin.write(b"".join(t + b"\n" for t in tips))
        listing.stdin.close()
        names = iter(pack.index)
        for line in sorted_.stdout:
            name = next(names, None)
            if name is None or _hex(name) != line[:40]:
                break
        else:
            equal = next(names, None) is None
            done = True
    finally:
        if not done:  # a difference (or an error): the rest of the listing is not needed
            for proc in (listing, sorted_):
                if proc.poll() is None:
                    proc.kill()
        sorted_.stdout.close()
        rc = (listing.wait(), sorted_.wait())
    return equal and rc == (0, 0)


def record_covering_pack(repo: Any, tips: list[bytes]) -> bool:
    """Write the sidecar if the repository is one pack equal to the closure of TIPS (loose
    objects beside it do not matter: the record is about what the pack holds)."""
    store = repo.object_store
    packs = list(store.packs)
    if len(packs) != 1 or not tips:
        return False
    pack = packs[0]
    if not _pack_is_closure(repo, pack, tips):
        return False
    write_sidecar(pack, tips)
    return True


def _repack_git(path: str, keep_unreachable_younger_than: float = UNREACHABLE_GRACE) -> None:
    # niced: upkeep yields the CPU to clones and pushes being served
    # -A with --unpack-unreachable, not -a: a push's pack is moved in before its refs move
    # (check #2 and a gate build run in between); its objects are unreachable meanwhile and
    # `-a -d` would delete them, leaving the ref about to move pointing at nothing
    # blobs over BIG_FILE are copied, never loaded for a delta search: a push of big files
    # must not make its repack hold them all (git's default threshold is 512 MiB)
    subprocess.run(["git", "-c", f"core.bigFileThreshold={BIG_FILE}", "-c",
                    f"pack.windowMemory={BIG_FILE}", "--git-dir", path, "repack", "-A", "-d",
                    "-q", f"--unpack-unreachable={int(time.time() - keep_unreachable_younger_than)}",
                    "--write-bitmap-index"], check=True, capture_output=True, timeout=3600,
                   preexec_fn=lambda: os.nice(10))


def _holds_young_unreachable(pack: Any, reachable: Any) -> bool:
    try:
        if time.time() - os.path.getmtime(dulwich_compat.pack_data_path(pack)) > UNREACHABLE_GRACE:
            return False
    except OSError:
        return False
    return any((sha if len(sha) == 40 else sha.hex().encode()) not in reachable
               for sha in pack.index)


def _repack_dulwich(repo: Any, tips: list[bytes]) -> None:
    """One new pack of the objects reachable from TIPS, copied from stored entries."""
    from gitserve.git.packcopy import write_pack
    from gitserve.git.packwalk import Walker

    store = repo.object_store
    old = list(store.packs)
    objects = Walker(store.get_raw, lambda s: s in store).walk(tips, []).objects
    f, commit, abort = store.add_pack()
    try:
        write_pack(store, objects, f.write)
    except BaseException:
        abort()
        raise
    new = commit()
    new_name = new.name() if new is not None else None
    for pack in old:
        if pack.name() == new_name:
            continue
        if _holds_young_unreachable(pack, objects):
            continue  # a push in flight: its ref has not moved yet (see _repack_git)
        base = dulwich_compat.pack_basename(pack)
        pack.close()
        for ext in (".pack", ".idx", ".bitmap", ".rev", SIDECAR_SUFFIX):
            try:
                os.unlink(base + ext)
            except FileNotFoundError:
                pass
    for sha in list(dulwich_compat.iter_loose_objects(store)):
        if sha in objects:
            store.delete_loose_object(sha)
    for d in Path(store.path).iterdir():
        if len(d.name) == 2 and d.is_dir():
            try:
                d.rmdir()  # only succeeds when empty
            except OSError:
                pass
    dulwich_compat.rescan_packs(store)


def repack_now(path: str) -> bool:
    """Repack the repository at PATH into one pack and record it as covering; True if
    the record was written."""
    from dulwich.repo import Repo

    repo = Repo(path)
    try:
        tips = ref_tips(repo)
        if not tips:
            return False
        with repo_lock(path):  # never alongside `gitserve admin gc` or serve's own gc
            if shutil.which("git"):
                _repack_git(path)
            else:
                _repack_dulwich(repo, tips)
        repo.close()
        repo = Repo(path)
        return record_covering_pack(repo, tips)
    finally:
        repo.close()


class _Scheduler:
    """At most one repack per repository at a time; requests during one coalesce."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._again: set[str] = set()
        self._last: dict[str, float] = {}

    def request(self, path: str, job: str = "repack") -> None:
        path = os.path.realpath(path)
        with self._lock:
            if path in self._running:
                self._again.add(path)
                return
            self._running.add(path)
        threading.Thread(target=self._run, args=(path, job), daemon=True,
                         name=f"gitserve-{job}").start()

    def _run(self, path: str, job: str) -> None:
        while True:
            wait = DELAY + max(0.0, self._last.get(path, 0.0) + MIN_INTERVAL - time.monotonic())
            time.sleep(wait)
            try:
                if job == "record":
                    from dulwich.repo import Repo

                    repo = Repo(path)
                    try:
                        record_covering_pack(repo, ref_tips(repo))
                    finally:
                        repo.close()
                else:
                    repack_now(path)
            except subprocess.CalledProcessError as exc:
                if exc.returncode < 0:  # killed: the server is stopping (Ctrl-C, SIGTERM)
                    log.info("%s of %s interrupted by signal %d", job, path, -exc.returncode)
                else:
                    err = (exc.stderr or b"").decode("utf-8", "replace") \
                        if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
                    log.warning("%s of %s failed: git exited %d%s", job, path, exc.returncode,
                                f": {' '.join(err.split())[:300]}" if err.strip() else "")
            except Exception as exc:  # upkeep must never take the server down
                log.warning("%s of %s failed: %s", job, path, exc)
            self._last[path] = time.monotonic()
            with self._lock:
                if path not in self._again:
                    self._running.discard(path)
                    return
                self._again.discard(path)


scheduler = _Scheduler()
_recorded: set[tuple[str, str]] = set()


def want_covering_pack(repo: Any) -> None:
    """A clone could not be a copy: if the repository is a single pack, try (once per pack)
    to record it as covering, in the background."""
    path = getattr(repo, "path", None)
    if path is None:
        return
    packs = list(repo.object_store.packs)
    if len(packs) != 1:
        scheduler.request(str(path))
        return
    key = (os.path.realpath(str(path)), packs[0].name())
    if key in _recorded:
        return
    _recorded.add(key)
    scheduler.request(str(path), "record")


class RepackAfterPush:
    """PushHook: schedule a background repack once a push went through."""

    def before_update(self, ctx: pushhooks.PushContext, update: pushhooks.RefUpdate
                      ) -> str | None:
        return None

    def after_push(self, ctx: pushhooks.PushContext, updates: list[pushhooks.RefUpdate]
                   ) -> None:
        if updates:
            scheduler.request(str(ctx.repo_path))

