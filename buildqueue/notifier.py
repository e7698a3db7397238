"""The notifier of `gitserve serve`: delivers the events of buildqueue.notify.

A thread reads the Redis stream through a consumer group (an event is acknowledged only
after all its deliveries ended, so a server restart re-delivers what was in flight) and
hands each event to a small thread pool: one slow receiver never holds up the others. Each
delivery is retried with exponential backoff ([notify] attempts, backoff, timeout) and ends
as one line in HOME/logs/notify.log.

It runs on the server because it needs the server's secrets: the repo's `webhook` signing
key and the SMTP password (scope @server). Everything it sends passes through a masker of
all secret values the server knows for the repo.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from . import keys, mailer, notify, notify_format, notifylog, rqconn, webhook
from .secrets import SERVER_SCOPE, Masker, SecretError
from .secretstore import store_for

log = logging.getLogger(__name__)

RECLAIM_IDLE_MS = 120_000  # a notifier that has not read the stream for this long is gone
RECLAIM_EVERY = 30.0  # seconds between looks for the events of notifiers that are gone


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Stopping(Exception):
    """The server stops: a delivery waiting to retry gives up (unacknowledged: redone next start)."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gitserve")
    except PackageNotFoundError:
        return "dev"


class Notifier:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=max(1, settings.notify.senders),
                                       thread_name_prefix="gitserve-notify")
        self.consumer = f"{socket.gethostname()}:{os.getpid()}"
        self.thread: threading.Thread | None = None
        self.user_agent = f"gitserve/{_version()}"

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="gitserve-notifier", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(5)
        # deliveries still retrying are dropped unacknowledged: the next start re-delivers them
        self.pool.shutdown(wait=False, cancel_futures=True)

    # --- the stream -----------------------------------------------------------------------
    def _connect(self) -> redis.Redis:
        r = rqconn.connect(self.settings.effective_redis_url)
        try:
            r.xgroup_create(keys.NOTIFY_EVENTS, keys.NOTIFY_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        return r

    def _run(self) -> None:
        r: redis.Redis | None = None
        next_reclaim = 0.0
        while not self.stop_event.is_set():
            try:
                if r is None:
                    r = self._connect()
                    self._own_pending(r)
                    next_reclaim = 0.0
                if time.monotonic() >= next_reclaim:
                    self._reclaim(r)
                    next_reclaim = time.monotonic() + RECLAIM_EVERY
                got: Any = r.xreadgroup(keys.NOTIFY_GROUP, self.consumer, {keys.NOTIFY_EVENTS: ">"},
                                        count=20, block=1000)
                self._submit(r, got)
            except (rqconn.RedisUnavailable, redis.RedisError, OSError) as exc:
                if r is not None:
                    log.warning("notifier: Redis error, retrying: %s", rqconn.one_line(exc))
                r = None
                self.stop_event.wait(1.0)
            except RuntimeError:  # the pool was shut down while stopping
                return

    def _submit(self, r: redis.Redis, got: Any) -> None:
        for _stream, entries in got or []:
            for entry_id, fields in entries:
                if fields:  # an entry deleted meanwhile comes back empty
                    self.pool.submit(self._handle, r, entry_id, fields)

    def _own_pending(self, r: redis.Redis) -> None:
        """Events this consumer name took before and never acknowledged (a notifier of this
        process stopped and started again)."""
        got: Any = r.xreadgroup(keys.NOTIFY_GROUP, self.consumer, {keys.NOTIFY_EVENTS: "0"}, count=1000)
        self._submit(r, got)

    def _reclaim(self, r: redis.Redis) -> None:
        """Take over the unacknowledged events of notifiers that are gone: a process of this
        host that no longer runs (a restarted server), or any consumer silent for
        RECLAIM_IDLE_MS (a live one reads the stream every second)."""
        consumers: Any = r.xinfo_consumers(keys.NOTIFY_EVENTS, keys.NOTIFY_GROUP)
        host = socket.gethostname()
        for c in consumers:
            raw = c.get("name")
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            if name == self.consumer:
                continue
            c_host, _, c_pid = name.rpartition(":")
            dead = c_host == host and c_pid.isdigit() and not _pid_alive(int(c_pid))
            if not dead and int(c.get("idle", 0)) < RECLAIM_IDLE_MS:
                continue
            pending: Any = r.xpending_range(keys.NOTIFY_EVENTS, keys.NOTIFY_GROUP, min="-", max="+",
                                            count=1000, consumername=name)
            ids = [p["message_id"] for p in pending]
            if ids:
                claimed: Any = r.xclaim(keys.NOTIFY_EVENTS, keys.NOTIFY_GROUP, self.consumer,
                                        min_idle_time=0, message_ids=ids)
                self._submit(r, [(keys.NOTIFY_EVENTS, claimed)])
            if len(ids) < 1000:
                r.xgroup_delconsumer(keys.NOTIFY_EVENTS, keys.NOTIFY_GROUP, name)

    # --- one event ------------------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        if self.stop_event.wait(seconds):
            raise _Stopping

    def _handle(self, r: redis.Redis, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            self.deliver(r, {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()})
        except _Stopping:
            return
        except Exception as exc:  # noqa: BLE001 - one bad event never stops the notifier
            # the type only: a message could quote a URL with its credentials
            log.warning("notifier: event %s dropped: %s", entry_id.decode(), type(exc).__name__)
        try:
            r.xack(keys.NOTIFY_EVENTS, keys.NOTIFY_GROUP, entry_id)
            r.xdel(keys.NOTIFY_EVENTS, entry_id)
        except redis.RedisError:
            pass

    def _masker(self, repo: str) -> tuple[Masker, str | None, str | None]:
        """(masker of every secret value known for REPO and the server, webhook key, SMTP password).
        Raises SecretError when they cannot be read: nothing is sent then (fail closed: an
        unsigned, possibly unmasked notification is worse than a missing one)."""
        repo_secrets = store_for(self.settings, repo).values(repo)
        server = store_for(self.settings, SERVER_SCOPE).values(SERVER_SCOPE)
        smtp_password = server.get(self.settings.smtp.password_secret) if self.settings.smtp.password_secret else None
        values = [*repo_secrets.values(), *server.values()]
        return Masker(values), repo_secrets.get("webhook"), smtp_password

    def deliver(self, r: redis.Redis, event: dict[str, str]) -> None:
        kind, repo, ts = event["event"], event["repo"], float(event.get("ts") or time.time())
        data = json.loads(event.get("data") or "{}")
        if kind == "push":
            options = data.pop("options", {})
        else:
            from . import records

            options = records.get(r, str(data["build_id"])).options
        if not notify.wants(options, kind):
            return
        hooks, mails = notify.targets(options)
        if kind == "push":
            mails = []
        build_id = str(data.get("build_id", ""))
        try:
            mask, webhook_key, smtp_password = self._masker(repo)
        except SecretError as exc:
            for channel, target in [("webhook", u) for u in hooks] + [("email", ", ".join(mails))] * bool(mails):
                notifylog.record(self.settings, repo=repo, event=kind, channel=channel, target=target,
                                 ok=False, status=None, attempts=0, error=f"not sent: secrets unavailable: {exc}",
                                 build_id=build_id)
            return
        notice = notify_format.mask_notice(
            notify_format.notice_for(self.settings, r, kind, repo, data, ts), mask)
        conf = self.settings.notify
        if hooks:
            body = notice.json_body()
            if kind != "push":
                body["log_tail"] = notice.log_lines[-10:]
            raw = webhook.encode(body)
            for url in hooks:
                out = webhook.post(url, raw, key=webhook_key, event=kind, delivery=notice.delivery,
                                   attempts=conf.attempts, backoff=conf.backoff, timeout=conf.timeout,
                                   user_agent=self.user_agent, sleep=self._sleep,
                                   allow_private=conf.allow_private)
                notifylog.record(self.settings, repo=repo, event=kind, channel="webhook", target=url,
                                 ok=out.ok, status=out.status, attempts=out.attempts, error=out.error,
                                 build_id=build_id, delivery=notice.delivery,
                                 latency=time.time() - ts)
        if mails:
            msg = mailer.message(self.settings.smtp, mails, notice.subject,
                                 notify_format.mail_body(notice))
            out = mailer.send(self.settings.smtp, smtp_password, msg, attempts=conf.attempts,
                              backoff=conf.backoff, sleep=self._sleep)
            notifylog.record(self.settings, repo=repo, event=kind, channel="email",
                             target=", ".join(mails), ok=out.ok, status=out.status,
                             attempts=out.attempts, error=out.error, build_id=build_id,
                             delivery=notice.delivery, latency=time.time() - ts)


class NotifierService:
    """`gitserve serve`'s service wrapper (start/stop)."""

    def __init__(self, settings: Any) -> None:
        self.notifier = Notifier(settings)

    def start(self) -> None:
        self.notifier.start()

    def stop(self) -> None:
        self.notifier.stop()


def services(settings: Any) -> list[Any]:
    """Always one notifier: with an external Redis too (workers elsewhere never send)."""
    return [NotifierService(settings)]
