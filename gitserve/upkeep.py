"""Repository upkeep: fsck and gc, and when `gitserve serve` runs them.

Every push leaves a pack, and pushes that die half-way (kill -9, disk full, a dropped
client) can leave a quarantine directory or a temporary pack behind. `gc` folds packs and
loose objects into one pack, drops unreachable objects older than a grace period and
removes those leftovers; `fsck` proves every object parses, hashes to its name and that
everything the refs reach is present.

gc is git's where a git binary is installed (`git repack -A -d -b` with the repack race
rules of gitserve.git.repack, then `git prune`): a bitmap is written, so clones after a gc
stay on git's fast path, and no Python walk of every object runs; then the pack is recorded
as covering (gitserve.git.repack.record_covering_pack). Without git, dulwich does the same
(no bitmap).

Both are safe while the server runs:
- a push's objects are unreachable between the moment its pack is moved in and the
  moment its refs move; the grace period (default two weeks, as git's gc.pruneExpire)
  keeps such young objects, so gc can never delete what a push is about to reference;
- refs are never rewritten (no pack-refs): ref updates stay the receive-pack's alone;
- one gc per repository at a time (a lock file under objects/), so the periodic run, the
  after-N-pushes run and `gitserve admin gc` never repack the same store concurrently.
  gitserve.git.repack (background repack after pushes) takes the same lock,
  `gitserve.git.repolock.repo_lock(path)`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dulwich.errors import ChecksumMismatch, ObjectFormatException
from dulwich.objects import Blob
from dulwich.repo import Repo

from gitserve.errors import GitserveError
from gitserve import repos
from gitserve.git import pushhooks
from gitserve.git.graph import reach
from gitserve.git.quarantine import object_links
from gitserve.git.repolock import LOCK_NAME, repo_lock  # noqa: F401  (LOCK_NAME: upkeep's API)
from gitserve.settings import Settings

log = logging.getLogger(__name__)

QUARANTINE_PREFIX = "incoming-"  # gitserve.git.quarantine's directories under objects/
# a quarantine or temporary pack untouched this long belongs to a push that died
LEFTOVER_AGE = 6 * 3600.0
# no ref update holds its lock this long: an older one belongs to a killed process
REF_LOCK_AGE = 600.0
# repos.create builds a new repository in repositories/.creating-*
CREATING_PREFIX = ".creating-"


class UpkeepError(GitserveError):
    """A repository cannot be checked or collected (one-line reason)."""


# --- fsck -----------------------------------------------------------------------------

@dataclass
class FsckReport:
    name: str
    objects: int = 0
    packs: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems




def fsck_repo(path: Path | str, name: str = "") -> FsckReport:
    """Check the repository at PATH the way `git fsck` does, with dulwich only."""
    report = FsckReport(name or str(path))
    try:
        repo = Repo(str(path))
    except Exception as exc:  # noqa: BLE001 - not a repository at all
        report.problems.append(f"not a git repository: {_one_line(exc)}")
        return report
    try:
        store = repo.object_store
        for pack in store.packs:
            report.packs += 1
            try:
                pack.check()
            except (ChecksumMismatch, AssertionError, ValueError, OSError) as exc:
                report.problems.append(f"pack {pack.name().decode()}: {_one_line(exc)}")
        links: dict[bytes, list[bytes]] = {}
        present: set[bytes] = set()
        for sha in store:
            present.add(sha)
            try:
                obj = store[sha]
                if obj.id != sha:
                    raise ObjectFormatException(f"hashes to {obj.id.decode()}")
                obj.check()
            except Exception as exc:  # noqa: BLE001 - every failure is a finding, not a crash
                report.problems.append(f"object {sha.decode()}: {_one_line(exc)}")
                continue
            if not isinstance(obj, Blob):
                links[sha] = list(object_links(obj))
        report.objects = len(present)
        try:
            refs = repo.refs.as_dict()
        except Exception as exc:  # noqa: BLE001
            report.problems.append(f"refs unreadable: {_one_line(exc)}")
            refs = {}
        roots: list[bytes] = []
        for ref, sha in sorted(refs.items()):
            if ref == b"HEAD":
                continue
            if sha not in present:
                report.problems.append(f"ref {ref.decode('utf-8', 'replace')} points to missing "
                                       f"object {sha.decode()}")
            else:
                roots.append(sha)
        head = repo.refs.get_symrefs().get(b"HEAD")
        if head is not None and head not in refs and refs:
            report.notes.append(f"HEAD names {head.decode()}, which does not exist")
        report.problems.extend(_missing_links(roots, links, present))
        leftovers = _leftovers(Path(path), 0.0)
        if leftovers:
            report.notes.append(f"{len(leftovers)} temporary file(s) of interrupted pushes "
                                "(gc removes them)")
    finally:
        repo.close()
    return report


def _missing_links(roots: list[bytes], links: dict[bytes, list[bytes]],
                   present: set[bytes]) -> list[str]:
    """Walk from the refs; every object reached must be present."""
    problems: list[str] = []

    def present_links(sha: bytes) -> list[bytes]:
        missing = [t for t in links.get(sha, ()) if t not in present]
        problems.extend(f"object {sha.decode()}: missing {t.decode()}" for t in missing)
        return [t for t in links.get(sha, ()) if t in present]

    for _ in reach(roots, present_links):  # the walk is the check: present_links records
        pass
    return problems


# --- gc -------------------------------------------------------------------------------

@dataclass
class GcReport:
    name: str
    packs_before: int = 0
    packs_after: int = 0
    loose_before: int = 0
    loose_after: int = 0
    pruned: int = 0
    leftovers_removed: int = 0
    skipped: str = ""

    def summary(self) -> str:
        if self.skipped:
            return f"{self.name}: skipped ({self.skipped})"
        return (f"{self.name}: packs {self.packs_before} -> {self.packs_after}, loose objects "
                f"{self.loose_before} -> {self.loose_after}, pruned {self.pruned} unreachable, "
                f"removed {self.leftovers_removed} leftover(s)")


def _leftovers(path: Path, min_age: float) -> list[Path]:
    """Quarantines and temporary packs of pushes that died, untouched for MIN_AGE seconds."""
    objects = path / "objects"
    now = time.time()
    found: list[Path] = []
    candidates = list(objects.glob(QUARANTINE_PREFIX + "*")) + list(objects.glob("tmp_pack_*")) \
        + list((objects / "pack").glob("tmp_*"))
    for p in candidates:
        if now - _newest_mtime(p) >= min_age:
            found.append(p)
    return found


def _newest_mtime(p: Path) -> float:
    try:
        newest = p.lstat().st_mtime
    except FileNotFoundError:
        return time.time()
    if p.is_dir() and not p.is_symlink():
        for root, _dirs, files in os.walk(p):
            for f in files:
                try:
                    newest = max(newest, os.lstat(os.path.join(root, f)).st_mtime)
                except FileNotFoundError:
                    pass
    return newest


def _counts(path: Path) -> tuple[int, int]:
    """(packs, loose objects) of the repository at PATH, from the file system."""
    pack_dir = path / "objects" / "pack"
    packs = len(list(pack_dir.glob("pack-*.idx"))) if pack_dir.is_dir() else 0
    loose = sum(1 for d in (path / "objects").glob("[0-9a-f][0-9a-f]") if d.is_dir()
                for _ in d.iterdir())
    return packs, loose


def _object_count(path: Path) -> int:
    """Distinct objects in the repository (git lists each once, streamed: flat memory)."""
    proc = subprocess.Popen(["git", "--git-dir", str(path), "cat-file", "--batch-all-objects",
                             "--batch-check=%(objecttype)"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    n = sum(1 for _ in proc.stdout)
    proc.wait()
    return n


def _gc_git(path: Path, report: GcReport, grace_period: float) -> None:
    """git's gc, the way git gc runs it: `repack -A -d` keeping unreachable objects younger
    than GRACE_PERIOD (loosened, so a push whose pack moved in before its ref moves keeps
    its objects: gitserve.git.repack's rule), with a bitmap; `prune` of the loose
    unreachable objects older than GRACE_PERIOD; then the covering-pack record."""
    from gitserve.git import repack

    before = _object_count(path)
    repack._repack_git(str(path), keep_unreachable_younger_than=grace_period)
    subprocess.run(["git", "--git-dir", str(path), "prune",
                    f"--expire={int(time.time() - grace_period)}"],
                   check=True, capture_output=True, timeout=3600,
                   preexec_fn=lambda: os.nice(10))
    report.pruned = max(0, before - _object_count(path))
    repo = Repo(str(path))
    try:
        repack.record_covering_pack(repo, repack.ref_tips(repo))
    finally:
        repo.close()


def gc_repo(path: Path | str, name: str = "", grace_period: float = 14 * 86400,
            leftover_age: float = LEFTOVER_AGE, wait: bool = True,
            use_git: bool | None = None) -> GcReport:
    """Repack the repository at PATH into one pack, prune unreachable objects older than
    GRACE_PERIOD seconds and remove leftovers of dead pushes. USE_GIT (default: whether
    git is installed) picks git's gc over dulwich's."""
    from dulwich.gc import find_unreachable_objects

    if use_git is None:
        use_git = shutil.which("git") is not None
    path = Path(path)
    report = GcReport(name or str(path))
    with repo_lock(path, wait=wait) as locked:
        if not locked:
            report.skipped = "another gc of this repository is running"
            return report
        report.leftovers_removed += len(remove_stale_ref_locks(path, time.time() - REF_LOCK_AGE))
        for p in _leftovers(path, leftover_age):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            report.leftovers_removed += 1
        if use_git:
            report.packs_before, report.loose_before = _counts(path)
            if report.packs_before or report.loose_before:  # (as `git gc`: always repacks)
                _gc_git(path, report, grace_period)
            repo = Repo(str(path))
            try:  # temporary packs of dead pushes older than LEFTOVER_AGE
                repo.object_store.prune(grace_period=int(leftover_age))
            finally:
                repo.close()
            report.leftovers_removed += _remove_orphan_sidecars(path / "objects" / "pack")
            report.packs_after, report.loose_after = _counts(path)
            return report
        repo = Repo(str(path))
        try:
            store = repo.object_store
            report.packs_before = len(store.packs)
            report.loose_before = store.count_loose_objects()
            prune: set[bytes] = set()
            now = time.time()
            for sha in find_unreachable_objects(store, repo.refs):
                try:
                    if now - store.get_object_mtime(sha) >= grace_period:
                        prune.add(sha)
                except KeyError:
                    continue
            if report.packs_before > 1 or report.loose_before or prune:
                store.repack(exclude=prune)
            report.pruned = len(prune)
            store.prune(grace_period=int(leftover_age))
            report.leftovers_removed += _remove_orphan_sidecars(path / "objects" / "pack")
            report.packs_after = len(store.packs)
            report.loose_after = store.count_loose_objects()
        finally:
            repo.close()
    return report


def _remove_orphan_sidecars(pack_dir: Path) -> int:
    """Bitmaps, reverse indexes and covering-pack records (gitserve.git.repack) whose pack
    is gone: a repack removes packs, not always what other tools wrote beside them."""
    removed = 0
    for p in pack_dir.glob("pack-*.*"):
        if p.suffix in (".pack", ".idx", ".keep", ".promisor"):
            continue
        if not p.with_name(p.name.split(".", 1)[0] + ".pack").exists():
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def remove_stale_ref_locks(path: Path, older_than: float) -> list[Path]:
    """Ref lock files (`refs/heads/main.lock`, `packed-refs.lock`, `HEAD.lock`) last touched
    before OLDER_THAN (a time.time() value): a process SIGKILLed between taking a ref's lock
    and renaming it leaves one, and every later update of that ref fails until it goes."""
    removed = []
    candidates = list((path / "refs").rglob("*.lock")) + [path / "packed-refs.lock",
                                                           path / "HEAD.lock"]
    for lock in candidates:
        try:
            if lock.is_file() and lock.stat().st_mtime < older_than:
                lock.unlink()
                removed.append(lock)
        except OSError:
            continue
    return removed


def needs_gc(path: Path | str, pack_limit: int, loose_limit: int) -> bool:
    """git's gc --auto test: too many packs or loose objects, or leftovers of dead pushes."""
    path = Path(path)
    pack_dir = path / "objects" / "pack"
    packs = len(list(pack_dir.glob("*.idx"))) if pack_dir.is_dir() else 0
    if pack_limit and packs >= pack_limit:
        return True
    if loose_limit:
        loose = 0
        for d in (path / "objects").glob("[0-9a-f][0-9a-f]"):
            loose += sum(1 for _ in d.iterdir())
            if loose >= loose_limit:
                return True
    return bool(_leftovers(path, LEFTOVER_AGE))


def select_repos(settings: Settings, name: str | None) -> list[tuple[str, Path]]:
    """(name, path) of REPO, or of every repository; raises UpkeepError for a bad name."""
    if name is None:
        return [(n, repos.path(settings, n)) for n in repos.list_names(settings)]
    try:
        clean = repos.parse_repo_arg(name)
        if not repos.exists(settings, clean):
            raise UpkeepError(f"no repository named '{clean}'")
        return [(clean, repos.path(settings, clean))]
    except repos.RepoError as exc:
        raise UpkeepError(str(exc)) from None


# --- schedule: `gitserve serve` ---------------------------------------------------------

class UpkeepService:
    """Background gc in `gitserve serve`: every `gc_interval` seconds for repositories that
    need it (git's gc --auto limits), and after every `gc_after_pushes` pushes to a repo.

    Runs niced in one thread, one repository at a time, so upkeep never competes with
    the clones and pushes being served for more than one core."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conf = settings.upkeep
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._pushes: dict[str, int] = {}
        self._due: set[str] = set()
        self._thread: threading.Thread | None = None
        self.runs: list[GcReport] = []  # recent results, newest last (for tests and status)

    # PushHook (gitserve.app puts this service in the push hooks too)
    def before_update(self, ctx: pushhooks.PushContext, update: pushhooks.RefUpdate
                      ) -> str | None:
        return None

    def after_push(self, ctx: pushhooks.PushContext, updates: list[pushhooks.RefUpdate]) -> None:
        if not updates or self.conf.gc_after_pushes <= 0:
            return
        with self._lock:
            n = self._pushes.get(ctx.repo_name, 0) + 1
            if n >= self.conf.gc_after_pushes:
                self._due.add(ctx.repo_name)
                n = 0
                self._wake.set()
            self._pushes[ctx.repo_name] = n

    def start(self) -> None:
        # this server now owns the home (the embedded Redis refuses a second `serve`): ref
        # locks older than our start were left by a killed predecessor and would refuse
        # every push to those refs
        # (a lock a live process holds is milliseconds old: a ref update is one rename)
        before = time.time() - 1.0
        for name, path in select_repos(self.settings, None):
            for lock in remove_stale_ref_locks(path, before):
                log.warning("removed stale lock %s of %s", lock.name, name)
        self._thread = threading.Thread(target=self._loop, name="gitserve-upkeep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        try:  # Linux: the priority of this thread alone
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except OSError:
            pass
        interval = self.conf.gc_interval
        next_sweep = time.monotonic() + interval if interval > 0 else float("inf")
        while not self._stop.is_set():
            timeout = min(60.0, max(0.0, next_sweep - time.monotonic()))
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                due, self._due = self._due, set()
            if time.monotonic() >= next_sweep:
                due |= {n for n, p in select_repos(self.settings, None)
                        if needs_gc(p, self.conf.gc_pack_limit, self.conf.gc_loose_limit)}
                next_sweep = time.monotonic() + interval
            for name in sorted(due):
                if self._stop.is_set():
                    return
                self._run(name)

    def _run(self, name: str) -> None:
        try:
            path = repos.path(self.settings, name)
            report = gc_repo(path, name, grace_period=self.conf.prune_grace, wait=False)
        except Exception as exc:  # noqa: BLE001 - upkeep must never take the server down
            log.warning("gc of %s failed: %s", name, exc)
            return
        log.info("gc %s", report.summary())
        self.runs = (self.runs + [report])[-100:]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

