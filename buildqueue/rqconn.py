"""Redis connections and RQ queues as every part of buildqueue opens them.

JSON serializer only (SPEC §6): a job payload is plain data a worker on any host can read,
and nothing in Redis can make a worker unpickle code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel
from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from gitserve.errors import GitserveError

from . import keys

CONNECT_TIMEOUT = 3.0
T = TypeVar("T")


class RedisUnavailable(GitserveError):
    """Redis could not be reached; the message is one line for the pusher."""


SENTINEL_SCHEME = "redis+sentinel"
# how long one command keeps trying through a Sentinel failover (the sentinels need about
# down-after-milliseconds + an election to promote a replica; then the client finds it)
FAILOVER_WAIT = 30.0


@dataclass(frozen=True)
class SentinelAddress:
    """`redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]`: the one
    string [redis] sentinels/master_name/password become (Settings.effective_redis_url), so a
    worker started with `--url` follows the same master as the server."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    password: str | None
    db: int

    @classmethod
    def parse(cls, url: str) -> SentinelAddress:
        parts = urlsplit(url)
        if parts.scheme != SENTINEL_SCHEME:
            raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
        netloc = parts.netloc.rsplit("@", 1)[-1]
        hosts = []
        for item in netloc.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"sentinel address {item!r} is not HOST:PORT")
            hosts.append((host.strip("[]"), int(port)))
        path = [unquote(p) for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("no master name in the sentinel URL")
        db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
        password = unquote(parts.password) if parts.password else None
        return cls(tuple(hosts), path[0], password, db)


class DeadlineRetry(Retry):
    """redis-py's Retry bounded by wall time instead of a count: a frozen Redis (SIGSTOP, a
    host gone without a RST) costs a whole socket timeout per attempt, so "60 retries" could
    hold a push for minutes; this stops retrying TOTAL seconds after the command began."""

    def __init__(self, total: float) -> None:
        super().__init__(ExponentialBackoff(cap=1.0, base=0.05), -1,
                         (redis.ConnectionError, redis.TimeoutError, OSError))
        self.total = total

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any],
                        is_retryable: Callable[[Exception], bool] | None = None,
                        with_failure_count: bool = False) -> T:
        deadline = time.monotonic() + self.total
        self._backoff.reset()
        failures = 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise error
                time.sleep(min(self._backoff.compute(failures), left))


_RETRY_ON = [redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError]


def _sentinel_client(url: str, retry_for: float, socket_timeout: float) -> redis.Redis:
    addr = SentinelAddress.parse(url)
    sentinel = Sentinel(list(addr.sentinels), socket_timeout=socket_timeout,
                        sentinel_kwargs={"password": addr.password,
                                         "socket_timeout": CONNECT_TIMEOUT},
                        password=addr.password, db=addr.db,
                        socket_connect_timeout=CONNECT_TIMEOUT, health_check_interval=30,
                        retry=DeadlineRetry(retry_for), retry_on_error=_RETRY_ON)
    return sentinel.master_for(addr.master_name)


def connect(url: str, *, check: bool = True, retry_for: float | None = None,
            socket_timeout: float | None = None) -> redis.Redis:
    """A client for URL. Through Sentinel every command retries for RETRY_FOR seconds
    (default FAILOVER_WAIT: a failover is waited out); a plain URL retries only when
    RETRY_FOR is given (a push waiting out an outage, pushhook.push_redis). SOCKET_TIMEOUT
    bounds one reply (a frozen Redis); a plain URL has none by default, as rq's blocking
    dequeue needs."""
    try:
        if url.startswith(SENTINEL_SCHEME + "://"):
            r = _sentinel_client(url, FAILOVER_WAIT if retry_for is None else retry_for,
                                 socket_timeout or CONNECT_TIMEOUT)
        else:
            extra: dict[str, Any] = {}
            if retry_for:
                extra = {"retry": DeadlineRetry(retry_for), "retry_on_error": _RETRY_ON}
            r = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT,
                                     socket_timeout=socket_timeout,
                                     health_check_interval=30, **extra)
        if check:
            r.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise RedisUnavailable(f"Redis unreachable at {safe_url(url)}: {one_line(exc)}") from exc
    return r


def confirm_replicated(r: redis.Redis, replicas: int, timeout: float) -> int | None:
    """Redis WAIT: block until REPLICAS replicas hold every write made so far, at most
    TIMEOUT seconds; returns how many confirmed (None when REPLICAS is 0: nothing asked).

    WAIT only covers the writes of the connection it is sent on, and rq and the records
    write through other pooled connections; so one small write goes first on the same
    connection (a pipeline keeps both on one): the replication stream is ordered, so a
    replica that has this write has every write acknowledged before it, from any
    connection."""
    if replicas <= 0:
        return None
    pipe = r.pipeline(transaction=False)
    pipe.set(keys.REPLICATION_PROBE, str(time.time()), px=60_000)
    pipe.execute_command("WAIT", replicas, max(1, int(timeout * 1000)))
    _ok, acked = pipe.execute()
    return int(acked)


def connect_async(url: str) -> redis.asyncio.Redis:
    """The asyncio client of the web UI's live logs, for the same URLs as connect()."""
    import redis.asyncio
    import redis.asyncio.sentinel

    if url.startswith(SENTINEL_SCHEME + "://"):
        addr = SentinelAddress.parse(url)
        sentinel = redis.asyncio.sentinel.Sentinel(
            list(addr.sentinels), socket_timeout=CONNECT_TIMEOUT,
            sentinel_kwargs={"password": addr.password}, password=addr.password, db=addr.db)
        return sentinel.master_for(addr.master_name)
    return redis.asyncio.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT)


def insecure_reason(url: str) -> str | None:
    """Why URL is not a Redis that builds and other local users can be kept out of: a TCP
    Redis without a password (whoever reaches it can write a job for a worker, read build
    logs, forge build results). None for a unix socket or a URL with a password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None  # connect() reports the bad URL
    if parts.scheme not in ("redis", "rediss", SENTINEL_SCHEME) or parts.password:
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


def stop_job(r: redis.Redis, job_id: str) -> bool:
    """rq's stop-job command to the worker running JOB_ID (it kills the work-horse and runs the
    job's on_stopped callback); False when no worker runs it (not started, or already over)."""
    try:
        send_stop_job_command(r, job_id, serializer=JSONSerializer)
    except (NoSuchJobError, InvalidJobOperation):
        return False
    return True


def safe_url(url: str) -> str:
    """URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
