"""`[builds] per_repo`: how many builds of one repo run at once; later ones wait in push order.

Why: one repo pushing many branches at once (or a hostile repo) must not take every worker's
CPU and memory while other repos' builds wait. A build that wants to run joins the repo's
waiting zset (score: its id, so push order); the first one takes a slot when fewer than
PER_REPO are taken (atomically, in Redis: workers on several hosts agree). Entries of builds
that ended or whose worker is gone are dropped, so a crash never blocks the repo.
"""

from __future__ import annotations

import time
from typing import Callable

import redis

from . import ending, keys, records

POLL = 0.2
_TAKE = """
local first = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
if first ~= ARGV[1] then return 0 end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""


def _drop_stale(r: redis.Redis, repo: str, me: str) -> None:
    waiting, running = keys.repo_waiting(repo), keys.repo_running(repo)
    others = {x.decode() for x in r.zrange(waiting, 0, -1)} | {x.decode() for x in r.smembers(running)}
    for other_id in others - {me}:
        try:
            other = records.get(r, other_id)
            gone = other.is_final or ending.reap_if_lost(r, other)
        except records.BuildNotFound:
            gone = True
        if gone:
            r.zrem(waiting, other_id)
            r.srem(running, other_id)


def acquire(r: redis.Redis, build: records.Build, per_repo: int, say: Callable[[str], None]) -> None:
    """Wait for one of the repo's PER_REPO slots (`builds cancel` stops the job here as
    anywhere: rq's stop-job command; its on_stopped callback releases what it held)."""
    waiting, running = keys.repo_waiting(build.repo), keys.repo_running(build.repo)
    r.zadd(waiting, {build.id: int(build.id)}, nx=True)
    announced = False
    while True:
        _drop_stale(r, build.repo, build.id)
        if int(r.eval(_TAKE, 2, waiting, running, build.id, max(1, per_repo))):
            return
        if not announced:
            say(f"gitserve: waiting for a slot: [builds] per_repo = {per_repo} builds of "
                f"{build.repo} run at once")
            announced = True
        records.heartbeat(r, build.id)
        time.sleep(POLL)


def release(r: redis.Redis, build: records.Build) -> None:
    r.zrem(keys.repo_waiting(build.repo), build.id)
    r.srem(keys.repo_running(build.repo), build.id)
