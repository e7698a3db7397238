"""Build records in Redis: creation, state changes, history.

A build moves queued -> running [-> deploying] -> passed | failed | timed out | cancelled.
Every transition is a compare-and-set in Redis, because several parties may try to move or
end the same build at once: the job itself, `builds cancel` (rq's stop-job callback), and
whoever notices that its worker died. A move is a WATCH/MULTI transaction; the end is the one
Lua script (below), and whoever wins it writes the end event into the log stream in the same
atomic step, so a log reader sees exactly one end and never waits for a second one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from gitserve.errors import GitserveError

from . import keys, rqconn

FINAL = ("passed", "failed", "timed out", "cancelled")
ACTIVE = ("running", "deploying")  # a job holds these and sends heartbeats
DEPLOY_QUEUED = "deploy queued"     # passed, waiting for a deploy worker (no heartbeat yet)
HEARTBEAT_TTL = 8  # seconds without a heartbeat before a running build counts as lost
LOST_REASON = "worker lost"

# Why Lua here: ending a build is one step over five keys that must not interleave with
# another ender (the job, a cancel, a reaper on any host): check the status (and, for a reaper,
# that no heartbeat is left), write the end, append the end event to the log stream, drop the
# heartbeat, cancel marker and lane entry. A WATCH transaction could do it too, but every
# loser would retry under exactly the contention this step exists for; Lua does it in one
# round trip and the losers simply get 0.
_FINISH = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 0 end
if st == 'passed' or st == 'failed' or st == 'timed out' or st == 'cancelled' then return 0 end
if ARGV[6] == 'lost' then
  if (st ~= 'running' and st ~= 'deploying') or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
elseif ARGV[6] ~= '' and st ~= ARGV[6] then
  return 0
end
local now = tonumber(ARGV[3])
local started = tonumber(redis.call('HGET', KEYS[1], 'started') or '') or 0
if started <= 0 then started = now end
local duration = string.format('%.1f', math.max(0, now - started))
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'reason', ARGV[2], 'finished', ARGV[3], 'duration', duration)
if ARGV[5] ~= '' then redis.call('XADD', KEYS[2], '*', 'l', ARGV[5]) end
redis.call('XADD', KEYS[2], '*', 'event', 'end', 'status', ARGV[1], 'duration', duration, 'reason', ARGV[2])
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], redis.call('HGET', KEYS[1], 'id'))
return 1
"""



class BuildNotFound(GitserveError, LookupError):
    pass


@dataclass
class Build:
    id: str
    repo: str
    ref: str
    old: str
    new: str
    pusher: str
    mode: str
    queue: str
    status: str = "queued"
    reason: str = ""
    created: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    duration: str = ""
    worker: str = ""
    job_id: str = ""
    retry_of: str = ""
    options: dict[str, str] = field(default_factory=dict)
    # the server's signature over (id, repo, options) (enqueue.options_mac): the notifier
    # sends a build's notices only to targets the server put there, not a Redis writer
    options_mac: str = ""

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    @property
    def lane(self) -> str:
        return keys.lane(self.repo, self.ref)

    def summary(self) -> str:
        """The line a pusher sees last (SPEC §6): `build ID passed in N.Ns`."""
        return f"build {self.id} {self.status} in {self.duration or '0.0'}s"

    def to_redis(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.__dict__.items():
            if name == "options":
                out[name] = json.dumps(value, sort_keys=True)
            else:
                out[name] = str(value) if not isinstance(value, float) else repr(value)
        return out

    @classmethod
    def from_redis(cls, raw: dict[bytes, bytes]) -> "Build":
        data = {k.decode(): v.decode("utf-8", "replace") for k, v in raw.items()}
        kwargs: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            if name not in data:
                continue
            value: Any = data[name]
            if name == "options":
                value = json.loads(value or "{}")
            elif f.type in ("float", float):
                value = float(value or 0)
            kwargs[name] = value
        return cls(**kwargs)


def new_id(r: redis.Redis) -> str:
    return str(r.incr(keys.SEQUENCE))


def create(r: redis.Redis, build: Build, history: int) -> list[str]:
    """Store a new queued build; returns ids that fell out of the repo's history (deleted)."""
    build.created = build.created or time.time()
    score = int(build.id)
    pipe = r.pipeline()
    pipe.hset(keys.build(build.id), mapping=build.to_redis())
    pipe.zadd(keys.repo_builds(build.repo), {build.id: score})
    pipe.zadd(keys.ALL_BUILDS, {build.id: score})
    pipe.zadd(build.lane, {build.id: score})
    pipe.execute()
    return trim_history(r, build.repo, history)


def trim_history(r: redis.Redis, repo: str, history: int) -> list[str]:
    """Forget the oldest finished builds beyond HISTORY (running ones are never dropped)."""
    history = max(history, 50)  # SPEC: at least the last 50 builds per repo
    extra = r.zcard(keys.repo_builds(repo)) - history
    if extra <= 0:
        return []
    dropped = []
    for raw in r.zrange(keys.repo_builds(repo), 0, extra - 1):
        build_id = raw.decode()
        status = r.hget(keys.build(build_id), "status")
        if status is not None and status.decode() not in FINAL:
            continue
        delete(r, repo, build_id)
        dropped.append(build_id)
    return dropped


def delete(r: redis.Redis, repo: str, build_id: str) -> None:
    pipe = r.pipeline()
    pipe.delete(keys.build(build_id), keys.log(build_id), keys.artifact(build_id))
    pipe.zrem(keys.repo_builds(repo), build_id)
    pipe.zrem(keys.ALL_BUILDS, build_id)
    pipe.execute()


def get(r: redis.Redis, build_id: str) -> Build:
    raw = r.hgetall(keys.build(build_id)) if build_id.isdigit() else {}
    if not raw:
        raise BuildNotFound(build_id)
    return Build.from_redis(raw)


def set_fields(r: redis.Redis, build_id: str, **values: str) -> None:
    r.hset(keys.build(build_id), mapping={k: str(v) for k, v in values.items()})


def start(r: redis.Redis, build_id: str, worker: str) -> bool:
    """queued -> running; False when someone ended it first (a cancel while queued)."""
    return move(r, build_id, "queued", "running", worker, started=repr(time.time()))


def move(r: redis.Redis, build_id: str, expect: str, status: str, worker: str = "",
         **fields: str) -> bool:
    """EXPECT -> STATUS (and FIELDS, WORKER when given) with a fresh heartbeat, unless the
    build moved first (then False). A WATCH/MULTI transaction, tried again when another field
    of the record changed meanwhile."""
    key = keys.build(build_id)
    values = {"status": status, **fields, **({"worker": worker} if worker else {})}
    with r.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                current = pipe.hget(key, "status")
                if current is None or current.decode() != expect:
                    return False
                pipe.multi()
                pipe.hset(key, mapping=values)
                pipe.set(keys.heartbeat(build_id), "1", ex=HEARTBEAT_TTL)
                pipe.execute()
                return True
            except redis.WatchError:
                continue


def heartbeat(r: redis.Redis, build_id: str) -> None:
    r.set(keys.heartbeat(build_id), "1", ex=HEARTBEAT_TTL)


def finish(r: redis.Redis, build_id: str, status: str, reason: str = "", *,
           log_ttl: int = 0, last_line: str = "", only_if_lost: bool = False,
           expect: str = "") -> bool:
    """End the build unless it already ended (or is not in status EXPECT); True when this call
    ended it. ONLY_IF_LOST: only if it is running without heartbeat. Callers go through
    buildqueue.ending, which also sends the build's notification."""
    if status not in FINAL:
        raise ValueError(f"not a final status: {status}")
    raw = r.hmget(keys.build(build_id), "repo", "ref")
    if raw[0] is None:
        return False
    lane = keys.lane(raw[0].decode(), raw[1].decode())
    script = r.register_script(_FINISH)
    ended = bool(script(
        keys=[keys.build(build_id), keys.log(build_id), keys.heartbeat(build_id),
              keys.cancel(build_id), lane],
        args=[status, reason, repr(time.time()), log_ttl, last_line,
              "lost" if only_if_lost else expect],
    ))
    return ended  # the caller notifies (buildqueue.ending): records must not need rq


def reap_if_lost(r: redis.Redis, build: Build, log_ttl: int = 0) -> bool:
    """End a running build whose worker died: its RQ job failed without ending the build
    (the work-horse was killed), or it stopped sending heartbeats (the whole worker is gone)."""
    if build.status not in ACTIVE:
        return False
    job_id = build.job_id if build.status == "running" else keys.deploy_job(build.id)
    if job_id and rqconn.job_status(r, job_id) in ("failed", "stopped", "canceled"):
        return finish(r, build.id, "failed", LOST_REASON, log_ttl=log_ttl,
                      last_line=f"gitserve: {LOST_REASON}", expect=build.status)
    if r.exists(keys.heartbeat(build.id)):
        return False
    return finish(r, build.id, "failed", LOST_REASON, log_ttl=log_ttl,
                  last_line=f"gitserve: {LOST_REASON}", only_if_lost=True)


def list_ids(r: redis.Redis, repo: str | None = None, limit: int = 50) -> list[str]:
    key = keys.repo_builds(repo) if repo else keys.ALL_BUILDS
    return [x.decode() for x in r.zrevrange(key, 0, limit - 1)]


def earlier_in_lane(r: redis.Redis, build: Build) -> list[str]:
    """Unfinished builds of the same repo+ref pushed before BUILD."""
    return [x.decode() for x in r.zrangebyscore(build.lane, "-inf", f"({int(build.id)}")]
