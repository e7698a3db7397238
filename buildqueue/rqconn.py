"""Redis connections and RQ queues as every part of buildqueue opens them.

JSON serializer only (SPEC §6): a job payload is plain data a worker on any host can read,
and nothing in Redis can make a worker unpickle code.
"""

from __future__ import annotations

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from gitserve.errors import GitserveError

CONNECT_TIMEOUT = 3.0


class RedisUnavailable(GitserveError):
    """Redis could not be reached; the message is one line for the pusher."""


def connect(url: str, *, check: bool = True) -> redis.Redis:
    try:
        r = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT,
                                 health_check_interval=30)
        if check:
            r.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise RedisUnavailable(f"Redis unreachable at {safe_url(url)}: {one_line(exc)}") from exc
    return r


def insecure_reason(url: str) -> str | None:
    """Why URL is not a Redis that builds and other local users can be kept out of: a TCP
    Redis without a password (whoever reaches it can write a job for a worker, read build
    logs, forge build results). None for a unix socket or a URL with a password."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return None  # connect() reports the bad URL
    if parts.scheme not in ("redis", "rediss") or parts.password:
        return None
    return (f"Redis at {safe_url(url)} has no password: anyone who reaches it can make a worker "
            "run jobs; use redis://:PASSWORD@HOST:PORT/DB (Redis `requirepass`), or set "
            "[redis] allow_insecure = true")


def queue(r: redis.Redis, name: str) -> Queue:
    return Queue(name, connection=r, serializer=JSONSerializer)


def job_status(r: redis.Redis, job_id: str) -> str | None:
    """The RQ job's status ("queued", "started", "failed", ...) through rq's own API, or None
    when rq has no such job (never enqueued, or expired)."""
    try:
        return Job.fetch(job_id, connection=r, serializer=JSONSerializer).get_status(refresh=False)
    except NoSuchJobError:
        return None


def cancel_job(r: redis.Redis, job_id: str) -> None:
    """Cancel a job that has not started; a job already gone or finished is left as it is."""
    try:
        Job.fetch(job_id, connection=r, serializer=JSONSerializer).cancel()
    except (NoSuchJobError, InvalidJobOperation):
        pass


def safe_url(url: str) -> str:
    """URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
