"""Delivering notifications: rq jobs on the `notify` queue, which only `gitserve serve` works.

notify/events.py puts one `deliver_event` job per event on the queue. It runs on the server,
because it needs the server's secrets (the repo's `webhook` signing key, the SMTP password of
scope @server): it reads the build record, formats the notice (format.py), masks it with every
secret value the server knows for the repo, and queues one delivery job per target
(`send_webhook`, `send_mail`). A delivery that fails for a reason a retry may cure (no answer, a
timeout, HTTP 5xx, SMTP 4xx) raises, and rq retries it: `Retry(max=[notify] attempts - 1)`
waiting [notify] backoff, then twice as long each time (whole seconds, as rq counts them; rq's
scheduler in the notify workers re-queues it when due). A final outcome - delivered, refused
(HTTP 4xx, SMTP 5xx), or out of attempts - is one line in HOME/logs/notify.log.

So jobs wait in Redis, not in a process: an event queued while the server is down is delivered
when it starts, and a delivery pending a retry survives a restart. [notify] senders worker
processes work the queue, so one slow receiver never holds up the others.
"""

from __future__ import annotations

import logging
import math
import time
from email import message_from_string
from email import policy as email_policy
from email.message import EmailMessage
from typing import Any

import redis
from rq import Retry, get_current_job

from gitserve.options import NotifyOptions
from gitserve.secrets.crypt import SERVER_SCOPE, SecretError, check_job, sign_job
from gitserve.secrets.masker import Masker
from gitserve.secrets.store import store_for
from gitserve.settings import Settings

from .. import records, rqconn, rqjob
from ..enqueue import options_signed
from ..workersettings import WorkerSettings
from . import deliverylog as notifylog
from . import format as notify_format
from . import mailer, webhook
from .events import NOTIFY_QUEUE

log = logging.getLogger(__name__)

RESULT_TTL = 3600
FAILURE_TTL = 7 * 24 * 3600


class DeliveryFailed(Exception):
    """A delivery attempt that a later one may cure: rq retries the job (never a secret in it)."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gitserve")
    except PackageNotFoundError:
        return "dev"


def _settings() -> Settings:
    """The server's settings as serve runs with them: notify jobs run only in its notify
    workers (GITSERVE_HOME, and GITSERVE_SERVER_LISTEN for `serve --listen`)."""
    from gitserve import settings as settings_mod

    worker = WorkerSettings.from_env()
    if worker.home is None:
        raise RuntimeError("notify jobs run in gitserve serve's notify workers (GITSERVE_HOME unset)")
    settings = settings_mod.load(worker.home)
    if worker.server_listen:  # `serve --listen` overrides gitserve.toml
        settings.server.listen = worker.server_listen
    return settings


def _connection() -> redis.Redis:
    """The job's Redis; ForeignJob unless the worker runs gitserve's Job class (rqjob.py)."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("notify jobs run inside an rq worker")
    rqjob.require(job)
    return job.connection


def retry_policy(attempts: int, backoff: float) -> Retry | None:
    """ATTEMPTS tries in all, waiting BACKOFF seconds, then 2*BACKOFF, ... (rounded up to whole
    seconds, rq's unit); None for a single attempt."""
    if attempts <= 1:
        return None
    return Retry(max=attempts - 1,
                 interval=[max(1, math.ceil(backoff * 2 ** i)) for i in range(attempts - 1)])


def _secrets(settings: Settings, repo: str) -> tuple[Masker, dict[str, str], dict[str, str]]:
    """(masker of every secret value known for REPO and the server, REPO's secrets, the
    server's). Raises SecretError when they cannot be read: nothing is sent then (fail closed:
    an unsigned, possibly unmasked notification is worse than a missing one)."""
    repo_secrets = store_for(settings, repo).values(repo)
    server = store_for(settings, SERVER_SCOPE).values(SERVER_SCOPE)
    return Masker([*repo_secrets.values(), *server.values()]), repo_secrets, server


def deliver_event(event: dict[str, Any]) -> None:
    """The `notify` queue's event job: who gets EVENT, in what words; one delivery job each."""
    settings, r = _settings(), _connection()
    kind, repo = str(event["event"]), str(event["repo"])
    ts = float(event.get("ts") or time.time())
    data = dict(event.get("data") or {})
    # Redis is not the trust (anyone with its password writes jobs here): a push event, its
    # targets included, must be signed by the push hook that saw the push; a build or deploy
    # event only points at a build record (in Redis too), whose repo and options the server
    # signed when it queued the build
    if kind == "push":
        try:
            check_job(event, settings.secrets_key_file)
        except SecretError as exc:
            log.warning("notify: push event of %s refused: %s", repo, exc)
            return
        options = data.pop("options", {})
    else:
        build = records.get(r, str(data["build_id"]))
        if not options_signed(settings.secrets_key_file, build):
            log.warning("notify: %s event of build %s refused: its record's options are not "
                        "the ones this server signed", kind, build.id)
            return
        repo, options = build.repo, build.options
    targets = NotifyOptions.lenient(options)
    if not targets.wants(kind):
        return
    hooks = list(targets.webhook)
    mails = [] if kind == "push" else list(targets.email)
    build_id = str(data.get("build_id", ""))
    try:
        mask, repo_secrets, _server = _secrets(settings, repo)
    except SecretError as exc:
        for channel, target in [("webhook", u) for u in hooks] + [("email", ", ".join(mails))] * bool(mails):
            notifylog.record(settings, repo=repo, event=kind, channel=channel, target=target,
                             ok=False, status=None, attempts=0,
                             error=f"not sent: secrets unavailable: {exc}", build_id=build_id)
        return
    notice = notify_format.mask_notice(notify_format.notice_for(settings, r, kind, repo, data, ts), mask)
    common = {"repo": repo, "event": kind, "build_id": build_id, "delivery": notice.delivery, "ts": ts}
    queue = rqconn.queue(r, NOTIFY_QUEUE)
    retry = retry_policy(settings.notify.attempts, settings.notify.backoff)
    if hooks:
        body = notice.json_body()
        if kind != "push":
            body["log_tail"] = notice.log_lines[-10:]
        raw = webhook.encode(body).decode()
        # signed here, where the notice was made from the event: a delivery job sends only
        # what it carries, so a job written into Redis by anyone else gets no signature made
        key = repo_secrets.get("webhook")
        signature = webhook.sign(raw.encode(), key) if key else None
        for url in hooks:
            queue.enqueue("buildqueue.notify.notifier.send_webhook",
                          sign_job({**common, "url": url, "body": raw, "signature": signature},
                                   settings.secrets_key_file),
                          retry=retry, result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
                          description=f"notify {kind} {repo} webhook")
    if mails:
        msg = mailer.message(settings.smtp, mails, notice.subject, notify_format.mail_body(notice))
        queue.enqueue("buildqueue.notify.notifier.send_mail",
                      sign_job({**common, "to": ", ".join(mails), "message": msg.as_string()},
                               settings.secrets_key_file),
                      retry=retry, result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
                      description=f"notify {kind} {repo} mail")


def _attempt(settings: Settings) -> tuple[int, bool]:
    """(this attempt's number, whether it is the last) from rq's retry count."""
    job = get_current_job()
    left = job.retries_left if job is not None and job.retries_left is not None else 0
    return max(1, settings.notify.attempts - left), left <= 0


def _finish(settings: Settings, item: dict[str, Any], channel: str, target: str,
            out: webhook.Outcome) -> None:
    attempt, last = _attempt(settings)
    if not out.ok and not out.final and not last:
        raise DeliveryFailed(out.error or "failed")  # rq retries it after its interval
    notifylog.record(settings, repo=item["repo"], event=item["event"], channel=channel,
                     target=target, ok=out.ok, status=out.status, attempts=attempt,
                     error=out.error, build_id=item.get("build_id", ""),
                     delivery=item.get("delivery", ""), latency=time.time() - float(item["ts"]))


def _made_here(settings: Settings, item: dict[str, Any], channel: str) -> bool:
    """Did deliver_event (a notify worker holding secrets.key) make this delivery? One
    written into Redis by anyone else would have the server send his mail or post."""
    try:
        check_job(item, settings.secrets_key_file)
    except SecretError as exc:
        log.warning("notify: %s delivery refused: %s", channel, exc)
        return False
    return True


def send_webhook(item: dict[str, Any]) -> None:
    """One POST of a notice to one URL, with the signature deliver_event made."""
    _connection()
    settings = _settings()
    if not _made_here(settings, item, "webhook"):
        return
    out = webhook.post(item["url"], item["body"].encode(), signature=item.get("signature"),
                       event=item["event"], delivery=item.get("delivery", ""),
                       timeout=settings.notify.timeout, user_agent=f"gitserve/{_version()}",
                       allow_private=settings.notify.allow_private)
    _finish(settings, item, "webhook", item["url"], out)


def send_mail(item: dict[str, Any]) -> None:
    """One SMTP delivery of a notice, logged in with the server secret [smtp] password_secret."""
    _connection()
    settings = _settings()
    if not _made_here(settings, item, "email"):
        return
    password: str | None = None
    try:
        if settings.smtp.password_secret:
            password = store_for(settings, SERVER_SCOPE).values(SERVER_SCOPE).get(settings.smtp.password_secret)
    except SecretError as exc:
        out = webhook.Outcome(False, None, 1, f"not sent: secrets unavailable: {exc}", final=True)
    else:
        msg = message_from_string(item["message"], _class=EmailMessage, policy=email_policy.default)
        out = mailer.send(settings.smtp, password, msg)
    _finish(settings, item, "email", item["to"], out)
