"""The master's side: every change reaches every slave, and `mirror.sync` waits for it.

The queue is not kept anywhere but in memory, on purpose: what a slave lacks is always
derivable from disk (the repo's refs and meta now vs `gitserve-mirror-SLAVE.json`, the
state it was last sent), so a lost queue - a restart, a crash - loses nothing. One worker
thread per slave pushes the repos queued for it, one at a time, coalescing: ten pushes to
a repo while a mirror push runs become one more mirror push of the newest state. A slave
that fails is retried with a growing pause (up to `[mirror] catchup_interval`) and, when
it answers again, every repo is looked at at once; the catch-up loop also looks at every
repo each `catchup_interval`, so changes that bypass pushes (`gitserve admin add-key`, a
`perms` or `desc` on a wild repo, `mirror promote`) go out too.

`mirror.sync = N`: `MirrorHook.before_ack` runs after the refs moved and before git's
report-status; it queues the repo for every slave and waits until N of them confirm a push
that started after the refs moved (each request gets a ticket, each finished push records
the ticket it carried). Without N confirmations within `[mirror] sync_timeout` the refs
stay (the master has them, the slaves get them when they are back) but the pusher is told
the push is not acknowledged: `! [remote rejected] REF (mirror.sync ...)`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from gitserve import adminrepo as admin, repos
from gitserve.fsutil import locked
from gitserve.git.pushhooks import PushContext, RefUpdate
from gitserve.lfs.repo import store_for
from gitserve.metrics import NULL as NULL_METRICS
from gitserve.settings import Settings

from . import state
from .config import MASTER, MirrorError, RepoMirror, repo_mirror
from .transport import Transport

log = logging.getLogger(__name__)

# PushContext.extra key: the push came from this master (a mirror push, case 2)
MIRROR_SENDER = "mirror_sender"
SEQ_OPTION = "gitserve.mirror-seq="
_tids = itertools.count(1)


def mirror_of(settings: Settings, repo: str) -> RepoMirror:
    """The repo's mirror options in the rules in force now."""
    st = admin.current(settings)
    wild = repos.wild_info(settings, repo) if repos.exists(settings, repo) else None
    return repo_mirror(st.rules.options(repo, wild=wild))


def push_one(settings: Settings, transport: Transport, repo: str, slave: str,
             timeout: float | None = None, force: bool = False) -> tuple[bool, str]:
    """Bring SLAVE up to this repo's state now: meta (creator, perms, description, HEAD)
    when it changed, then the refs. Returns (ok, git's output). Serialized per repo and
    slave with Gitolite's lock file name, so a manual `mirror push` and the queue never
    push the same repo to the same slave at once."""
    repo_dir = repos.path(settings, repo)
    if not repo_dir.is_dir():
        return True, ""
    with locked(repo_dir / f".gl-mirror-lock.{slave}"):
        refs = state.refs_digest(repo_dir)
        meta = state.read_meta(repo_dir)
        lfs_oids = sorted(store_for(settings, repo).oids())
        lfs = state.lfs_digest(lfs_oids) if lfs_oids else ""
        synced = state.read_synced(repo_dir, slave)
        if force:  # `mirror push`: send everything again, as Gitolite's always runs git push
            synced = {}
        if synced.get("refs") == refs and synced.get("meta") == meta.digest() \
                and synced.get("lfs", "") == lfs:
            return True, ""
        tid = f"{os.getpid()}-{next(_tids)}"
        try:
            peer = transport.peer(slave)
        except MirrorError as exc:
            state.record_failure(repo_dir, slave, tid, f"FATAL: {exc}")
            return False, f"FATAL: {exc}"
        transport.ensure_master(peer)
        out = ""
        # the admin repo has no wild-repo meta; its own tree says who the master is
        if synced.get("meta") != meta.digest() and repo != repos.ADMIN_REPO:
            rc, stdout, stderr = transport.ssh(
                peer, f"mirror meta {repo}", json.dumps(meta.as_json()).encode(),
                timeout=timeout or settings.mirror.push_timeout)
            out = (stdout + stderr).decode("utf-8", "replace")
            if rc != 0:
                state.record_failure(repo_dir, slave, tid, out or f"fatal: ssh exit {rc}")
                return False, out
        if lfs and synced.get("lfs", "") != lfs:  # LFS objects before the refs naming them
            problem = _send_lfs(settings, transport, peer, repo, lfs_oids,
                                timeout or settings.mirror.push_timeout)
            if problem:
                state.record_failure(repo_dir, slave, tid, problem)
                return False, problem
        seq = state.next_seq(repo_dir, refs)
        if synced.get("refs") != refs:
            ok, out = transport.push(peer, repo_dir, repo, seq,
                                     timeout or settings.mirror.push_timeout,
                                     empty=not state.visible_refs(repo_dir))
            if not ok:
                state.record_failure(repo_dir, slave, tid, out)
                log.warning("mirror push of %s to %s failed: %s", repo, slave,
                            " ".join(out.split())[:300])
                return False, out
        state.record_synced(repo_dir, slave, refs, meta.digest(), seq, lfs)
        log.info("mirror push of %s to %s: seq %s", repo, slave, seq)
        return True, out


def _send_lfs(settings: Settings, transport: Transport, peer: Any, repo: str,
              oids: list[str], timeout: float) -> str | None:
    """Copy the LFS objects the slave lacks (it says which: `mirror lfs-want`); each object
    streamed as the stdin of `mirror lfs-put REPO OID SIZE`, checked by sha256 there.
    Returns what went wrong, or None."""
    rc, out, err = transport.ssh(peer, f"mirror lfs-want {repo}", "\n".join(oids).encode(),
                                 timeout=timeout)
    if rc != 0:
        return (out + err).decode("utf-8", "replace") or f"fatal: ssh exit {rc}"
    store = store_for(settings, repo)
    for oid in out.decode("ascii", "replace").split():
        size = store.size(oid)
        if size is None:
            continue  # removed meanwhile (lfs-gc): nothing to send
        rc, out2, err2 = transport.ssh_file(peer, f"mirror lfs-put {repo} {oid} {size}",
                                            store.path(oid), timeout)
        if rc != 0:
            return (out2 + err2).decode("utf-8", "replace") or f"fatal: ssh exit {rc}"
    return None


@dataclass
class _Lane:
    """One slave's queue and worker."""

    slave: str
    pending: dict[str, None] = field(default_factory=dict)  # repos, in order, once each
    thread: threading.Thread | None = None
    # repo -> (failures in a row, monotonic time before which it is not tried again)
    retry: dict[str, tuple[int, float]] = field(default_factory=dict)

    def next_due(self, now: float) -> tuple[str | None, float]:
        """The first pending repo whose pause is over, else (None, seconds to wait)."""
        soonest = 3600.0
        for repo in self.pending:
            due = self.retry.get(repo, (0, 0.0))[1]
            if due <= now:
                return repo, 0.0
            soonest = min(soonest, due - now)
        return None, soonest


class MirrorSyncer:
    """The background service of a master: queues, workers, catch-up, sync waits."""

    def __init__(self, settings: Settings, transport: Transport | None = None,
                 metrics: Any = NULL_METRICS) -> None:
        self.settings = settings
        self._transport = transport
        self.metrics = metrics  # gitserve.metrics.Metrics: pushes by result, lag per slave
        self._cond = threading.Condition()
        self._lanes: dict[str, _Lane] = {}
        self._wanted: dict[tuple[str, str], int] = {}
        # when the oldest change a (repo, slave) has not confirmed yet was queued
        self._since: dict[tuple[str, str], float] = {}
        self._done: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._catchup: threading.Thread | None = None

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = Transport(self.settings, multiplexer=True)
        return self._transport

    # --- service ----------------------------------------------------------------------
    def start(self) -> None:
        if not self.settings.server.hostname:
            return
        self.transport  # noqa: B018 - a bad [mirror] peers fails the start, in one line
        self._catchup = threading.Thread(target=self._catchup_loop, name="mirror-catchup",
                                         daemon=True)
        self._catchup.start()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        with self._cond:
            self._cond.notify_all()
        for lane in list(self._lanes.values()):
            if lane.thread is not None:
                lane.thread.join(5)
        if self._catchup is not None:
            self._catchup.join(5)
        if self._transport is not None:
            self._transport.close()

    @property
    def summary(self) -> str:
        s = self.settings
        if not s.server.hostname:
            return ""
        return f"mirroring as '{s.server.hostname}' (peers: {' '.join(self.transport.peers.by_name) or 'none'})"

    # --- queue ------------------------------------------------------------------------
    def request(self, repo: str, slaves: Iterable[str]) -> dict[str, int]:
        """Queue REPO for each slave; returns the ticket a push must carry to count."""
        tickets: dict[str, int] = {}
        with self._cond:
            for slave in slaves:
                key = (repo, slave)
                ticket = self._wanted.get(key, 0) + 1
                self._wanted[key] = ticket
                self._since.setdefault(key, time.monotonic())
                tickets[slave] = ticket
                lane = self._lane(slave)
                lane.pending[repo] = None
                failed = lane.retry.get(repo)
                if failed is not None:  # a new change is tried at once, pause or not
                    lane.retry[repo] = (failed[0], 0.0)
            self._cond.notify_all()
        return tickets

    def wait(self, repo: str, tickets: dict[str, int], need: int, timeout: float) -> list[str]:
        """The slaves (of TICKETS) that have REPO at least as new as their ticket, once NEED
        of them do or TIMEOUT passed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                done = [s for s, t in tickets.items() if self._done.get((repo, s), 0) >= t]
                left = deadline - time.monotonic()
                if len(done) >= need or left <= 0 or self._stop.is_set():
                    return done
                self._cond.wait(left)

    def _lane(self, slave: str) -> _Lane:
        lane = self._lanes.get(slave)
        if lane is None:
            lane = self._lanes[slave] = _Lane(slave)
        if lane.thread is None or not lane.thread.is_alive():
            lane.thread = threading.Thread(target=self._work, args=(lane,),
                                           name=f"mirror-{slave}", daemon=True)
            lane.thread.start()
        return lane

    def _work(self, lane: _Lane) -> None:
        while not self._stop.is_set():
            with self._cond:
                repo, pause = lane.next_due(time.monotonic())
                while repo is None and not self._stop.is_set():
                    self._cond.wait(min(pause, 1.0))
                    repo, pause = lane.next_due(time.monotonic())
                if self._stop.is_set() or repo is None:
                    return
                del lane.pending[repo]
                ticket = self._wanted.get((repo, lane.slave), 0)
                queued_at = self._since.pop((repo, lane.slave), None)
            try:
                ok, _out = push_one(self.settings, self.transport, repo, lane.slave)
            except Exception:  # noqa: BLE001 - a worker must survive anything one repo does
                log.exception("mirror push of %s to %s", repo, lane.slave)
                ok = False
            self.metrics.mirror_pushes.labels(lane.slave, "ok" if ok else "failed").inc()
            if ok and queued_at is not None:
                self.metrics.mirror_lag.labels(lane.slave).observe(time.monotonic() - queued_at)
            with self._cond:
                if not ok and queued_at is not None:  # still owed: the lag keeps counting
                    self._since.setdefault((repo, lane.slave), queued_at)
                if ok:
                    if self._done.get((repo, lane.slave), 0) < ticket:
                        self._done[(repo, lane.slave)] = ticket
                    self._cond.notify_all()
                    if lane.retry.pop(repo, None) is not None:
                        self._kick.set()  # it is back: look at every repo now
                    continue
                failures = lane.retry.get(repo, (0, 0.0))[0] + 1
                pause = min(0.25 * 2 ** failures, self.settings.mirror.catchup_interval)
                lane.retry[repo] = (failures, time.monotonic() + pause)
                lane.pending.setdefault(repo, None)  # tried again after the pause

    # --- catch-up -----------------------------------------------------------------------
    def _catchup_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.catch_up()
            except Exception:  # noqa: BLE001 - keep looking; the next round may work
                log.exception("mirror catch-up")
            self._kick.wait(self.settings.mirror.catchup_interval)
            self._kick.clear()

    def catch_up(self) -> int:
        """Queue every (repo, slave) whose slave was not sent the repo's state now;
        returns how many were queued."""
        hostname = self.settings.server.hostname
        if not hostname:
            return 0
        queued = 0
        for repo in repos.list_names(self.settings):
            if self._stop.is_set():
                break
            try:
                mirror = mirror_of(self.settings, repo)
            except Exception:  # noqa: BLE001 - one odd repo must not stop the others
                continue
            if mirror.mode(hostname) != MASTER:
                continue
            repo_dir = repos.path(self.settings, repo)
            refs: str | None = None
            meta: str | None = None
            behind = []
            lfs: str | None = None
            for slave in mirror.slaves:
                synced = state.read_synced(repo_dir, slave)
                refs = refs or state.refs_digest(repo_dir)
                meta = meta or state.read_meta(repo_dir).digest()
                if lfs is None:
                    oids = list(store_for(self.settings, repo).oids())
                    lfs = state.lfs_digest(oids) if oids else ""
                if synced.get("refs") != refs or synced.get("meta") != meta \
                        or synced.get("lfs", "") != lfs:
                    with self._cond:
                        lane = self._lanes.get(slave)
                        if lane is not None and repo in lane.pending:
                            continue
                    behind.append(slave)
            if behind:
                self.request(repo, behind)
                queued += len(behind)
        return queued


class MirrorHook:
    """The push hook of mirroring: on the master it queues the change for every slave and
    holds the acknowledgement for `mirror.sync`; on a slave it records the master's seq."""

    def __init__(self, settings: Settings, syncer: MirrorSyncer) -> None:
        self.settings = settings
        self.syncer = syncer

    def before_update(self, ctx: PushContext, update: RefUpdate) -> str | None:
        return None

    def before_ack(self, ctx: PushContext, updates: list[RefUpdate]) -> str | None:
        hostname = self.settings.server.hostname
        if not hostname:
            return None
        sender = ctx.extra.get(MIRROR_SENDER)
        if sender:
            seqs = [o[len(SEQ_OPTION):] for o in ctx.push_options if o.startswith(SEQ_OPTION)]
            if seqs and seqs[-1].isdigit():
                state.record_received(ctx.repo_path, int(seqs[-1]), str(sender))
            return None
        mirror = mirror_of(self.settings, ctx.repo_name)
        if mirror.mode(hostname) != MASTER:
            return None
        for slave in mirror.manual:
            ctx.progress(f"WARNING: manual mirror push pending for '{slave}'")
        tickets = self.syncer.request(ctx.repo_name, mirror.slaves)
        if not mirror.sync:
            return None
        timeout = self.settings.mirror.sync_timeout
        done = self.syncer.wait(ctx.repo_name, tickets, mirror.sync, timeout)
        if len(done) >= mirror.sync:
            return None
        missing = [s for s in mirror.slaves if s not in done]
        ctx.progress(f"WARNING: mirror.sync = {mirror.sync} but only {len(done)} slave(s) "
                     f"confirmed within {timeout:g}s (waiting for: {' '.join(missing)}); "
                     "the master keeps the update and mirrors it when they are back")
        return f"mirror.sync: {len(done)} of {mirror.sync} slave(s) confirmed"

    def after_push(self, ctx: PushContext, updates: list[RefUpdate]) -> None:
        return None




class OriginOnly:
    """A push hook that runs for pushes made here (a user's, or one a slave forwarded) and
    not for the master's mirror push to this slave: builds, deploys and site hooks run once,
    on the master, not again on every slave."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def before_update(self, ctx: PushContext, update: RefUpdate) -> str | None:
        if ctx.extra.get(MIRROR_SENDER):
            return None
        result: str | None = self.inner.before_update(ctx, update)
        return result

    def after_push(self, ctx: PushContext, updates: list[RefUpdate]) -> None:
        if not ctx.extra.get(MIRROR_SENDER):
            self.inner.after_push(ctx, updates)

    def __repr__(self) -> str:
        return f"OriginOnly({self.inner!r})"
