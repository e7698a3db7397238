"""Notification events: `push`, `build` and `deploy`, queued for the server to deliver.

Whoever sees an event happen (the push hook in the SSH server, the build job that ends a
build on any worker host, the deploy job) only queues a small rq job on the `notify` queue
here, which only `gitserve serve`'s notify workers work (notifier.py): they deliver
`notify.webhook` posts and `notify.email` mail. So secrets used for delivery (the
SMTP password, the webhook signing key) never leave the server, a build host needs nothing
but Redis, and a slow receiver never delays a push or a build. Events hold no secret: names,
refs, ids and results only; the notifier reads the rest (log lines) when it sends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis

from gitserve.options import NotifyOptions, RepoOptions
from gitserve.secrets.crypt import sign_job

from .. import records, rqconn

log = logging.getLogger(__name__)

NOTIFY_QUEUE = "notify"  # only gitserve serve's notify workers work it (they hold the secrets)
EVENT_TTL = 7 * 24 * 3600  # an event nobody delivered (no server running) is kept this long


def emit(r: redis.Redis, event: str, repo: str, data: dict[str, Any],
         key_file: Path | None = None) -> None:
    """Queue one event, signed with KEY_FILE (secrets.key) when given; never raises (a
    notification must never break what it reports)."""
    try:
        job: dict[str, Any] = {"event": event, "repo": repo, "ts": time.time(), "data": data}
        rqconn.queue(r, NOTIFY_QUEUE).enqueue(
            "buildqueue.notify.notifier.deliver_event",
            sign_job(job, key_file) if key_file is not None else job,
            ttl=EVENT_TTL, result_ttl=3600, failure_ttl=EVENT_TTL,
            description=f"notify {event} {repo}")
    except Exception as exc:  # noqa: BLE001
        log.warning("notify: %s event of %s not queued: %s", event, repo, type(exc).__name__)


def push_event(r: redis.Redis, repo: str, pusher: str, options: RepoOptions,
               updates: Iterable[Any], key_file: Path) -> None:
    """One `push` event per pushed ref that moved (UPDATES: RefUpdate-like ref/old/new),
    signed with the server's KEY_FILE: only the server sees pushes, and the notifier signs
    the webhook for what a push event says, so one written into Redis by anyone else is
    refused there."""
    if not options.notify.wants("push"):
        return
    notify_opts = {k: v for k, v in options.raw.items() if k.startswith(NotifyOptions.PREFIX)}
    for u in updates:
        emit(r, "push", repo, {"ref": u.ref, "old": u.old, "new": u.new, "pusher": pusher,
                               "options": notify_opts}, key_file)


def build_ended(r: redis.Redis, build_id: str) -> None:
    """The `build` event of an ended build, if its repo asks for notifications. Never raises."""
    try:
        build = records.get(r, build_id)
    except Exception:  # noqa: BLE001
        return
    if NotifyOptions.lenient(build.options).wants("build"):
        emit(r, "build", build.repo, {"build_id": build_id})


def deploy_event(r: redis.Redis, build_id: str, site: str, result: str, *, side: str = "",
                 previous_side: str = "", reason: str = "") -> None:
    """A deploy switched the live side (RESULT "switched"), or failed ("failed")."""
    try:
        build = records.get(r, build_id)
    except Exception:  # noqa: BLE001
        return
    if NotifyOptions.lenient(build.options).wants("deploy"):
        emit(r, "deploy", build.repo, {"build_id": build_id, "site": site, "result": result,
                                       "side": side, "previous_side": previous_side,
                                       "reason": reason})
