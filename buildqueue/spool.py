"""Builds a push could not queue because Redis was unreachable, kept on disk until it is back.

SPEC §6 says the push still succeeds when Redis is down; issue 22 asks that such builds are
"queued when it does" (come back) and that none is lost or run twice. The push writes
HOME/spool/builds/ID.json (what `enqueue.enqueue` needs: repo, ref, old/new, pusher, the
options in force at the push) and pins the commit at refs/gitserve/spool/ID, so gc keeps it
and no user or mirror ever sees it. `SpoolService` (in `gitserve serve`) looks every
`INTERVAL` seconds and queues what it finds, oldest first, once Redis answers.

Run once: after the job is queued the entry's marker `gitserve:spooled:ID` is set to the
build id in Redis, and only then the file goes; a pass that finds the marker (a crash
between the two) just removes the file. The window left is a crash between rq's enqueue
and the marker, which would queue it twice: a process death inside two Redis round trips.
Why files and not a second Redis: the spool exists for the time there is no Redis, and the
repository it points into is on this disk anyway.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis
from dulwich.repo import Repo

from gitserve.fsutil import atomic_write
from gitserve.options import RepoOptions
from gitserve.settings import Settings

from . import enqueue, keys, rqconn

log = logging.getLogger(__name__)

PIN_PREFIX = "refs/gitserve/spool/"
INTERVAL = 2.0  # seconds between looks at a non-empty spool
MARKER_TTL = 7 * 24 * 3600


def spool_dir(settings: Settings) -> Path:
    return settings.home / "spool" / "builds"


@dataclass
class Held:
    """One build waiting for Redis."""

    repo: str
    ref: str
    old: str
    new: str
    pusher: str
    options: dict[str, str]
    reason: str = ""
    id: str = field(default_factory=lambda: f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}")
    created: float = field(default_factory=time.time)


def hold(settings: Settings, repo_path: Path, held: Held) -> None:
    """Keep HELD on disk (commit pinned first, then the file: a file is only ever written for
    a commit that cannot be collected)."""
    repo = Repo(str(repo_path))
    try:
        repo.refs[(PIN_PREFIX + held.id).encode()] = held.new.encode()
    finally:
        repo.close()
    d = spool_dir(settings)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write(d / f"{held.id}.json", json.dumps(asdict(held), sort_keys=True), mode=0o600,
                 durable=True)  # the push is answered on the strength of this file


def pending(settings: Settings) -> list[Path]:
    d = spool_dir(settings)
    if not d.is_dir():
        return []
    return sorted(d.glob("*.json"))


def _unpin(repo_path: Path, held_id: str) -> None:
    if not repo_path.is_dir():
        return
    repo = Repo(str(repo_path))
    try:
        try:
            del repo.refs[(PIN_PREFIX + held_id).encode()]
        except KeyError:
            pass
    finally:
        repo.close()


def _forget(path: Path, repo_path: Path, held_id: str) -> None:
    path.unlink(missing_ok=True)
    _unpin(repo_path, held_id)


def drain(settings: Settings, r: redis.Redis) -> list[str]:
    """Queue every held build (oldest first); returns the build ids queued. Stops at the
    first Redis error (the rest waits for the next pass)."""
    queued = []
    for path in pending(settings):
        try:
            held = Held(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            log.error("spool: %s is unreadable (%s); moved aside", path.name, exc)
            path.rename(path.with_suffix(".bad"))
            continue
        repo_path = settings.repo_path(held.repo)
        marker = keys.PREFIX + "spooled:" + held.id
        done = r.get(marker)
        if done is not None:  # queued by an earlier pass that did not get to remove the file
            _forget(path, repo_path, held.id)
            continue
        if not repo_path.is_dir():
            log.error("spool: %s is gone; build of %s %s dropped", held.repo, held.ref,
                      held.new[:12])
            _forget(path, repo_path, held.id)
            continue
        build = enqueue.enqueue(settings, r, held.repo, repo_path, held.ref, held.old, held.new,
                                held.pusher, RepoOptions.parse(held.options), "async")
        r.set(marker, build.id, ex=MARKER_TTL)
        rqconn.confirm_replicated(r, settings.redis_wait_replicas, settings.redis.wait_timeout)
        log.info("spool: build %s queued for %s %s %s (held since %s: %s)", build.id, held.repo,
                 held.ref, held.new[:12], time.strftime("%H:%M:%S", time.localtime(held.created)),
                 held.reason)
        _forget(path, repo_path, held.id)
        queued.append(build.id)
    return queued


class SpoolService:
    """Queues held builds once Redis answers again (a thread in `gitserve serve`)."""

    def __init__(self, settings: Settings, interval: float = INTERVAL) -> None:
        self.settings = settings
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="build-spool", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not pending(self.settings):
                continue
            try:
                r = rqconn.connect(self.settings.effective_redis_url, retry_for=0.0,
                                   socket_timeout=rqconn.CONNECT_TIMEOUT + 2)
                drain(self.settings, r)
            except (rqconn.RedisUnavailable, redis.RedisError, OSError) as exc:
                log.debug("spool: Redis not back yet: %s", rqconn.one_line(exc))
            except Exception:  # noqa: BLE001 - a bug must not end the thread that owes builds
                log.exception("spool: pass failed")


def count(settings: Settings) -> int:
    """How many builds wait in the spool (for status output)."""
    return len(pending(settings))

